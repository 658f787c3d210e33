"""The rig's QEMU builds as fixtures: a missing one skips, saying why and how to install it,
or fails when ``BLKREPLAY_REQUIRE_QEMU=1`` (set by `.ci/run`: CI never skips silently)."""

from __future__ import annotations

import os

import pytest

from tests.integration.qemu_rig import RigUnavailable, Tools, find_tools

_found: dict[str, Tools | RigUnavailable] = {}


def rig_tools(version: str) -> Tools:
    """The rig with QEMU `version`, or skip / fail (under BLKREPLAY_REQUIRE_QEMU=1)."""
    if version not in _found:
        try:
            _found[version] = find_tools(version)
        except RigUnavailable as exc:
            _found[version] = exc
    found = _found[version]
    if isinstance(found, RigUnavailable):
        if os.environ.get("BLKREPLAY_REQUIRE_QEMU") == "1":
            pytest.fail(f"real QEMU {version} rig unavailable but BLKREPLAY_REQUIRE_QEMU=1: {found}")
        pytest.skip(f"real QEMU {version} rig unavailable: {found}")
    return found


def known_false_alarm(request: pytest.FixtureRequest, reasons: dict, key) -> None:
    """Mark this test strict-xfail when `key` names a false alarm of today's rules (issue #11):
    it must fail now and pass once the rules are fixed, then the entry is deleted."""
    if key in reasons:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reasons[key]))
