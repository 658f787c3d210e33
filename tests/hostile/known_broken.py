"""The work list of issue #12: every hostile-input test that fails against today's code.

Each entry is a test (node id relative to tests/hostile/, as pytest names it) -> why it fails
today, then ``->`` where the fix belongs. ``conftest.py`` marks each one
``xfail(strict=True)``, so CI stays green while the list is worked off, and a test that starts
to pass fails loudly until its line here is deleted. Keep it grouped by file.
"""

from __future__ import annotations

KNOWN_BROKEN: dict[str, str] = {
}
