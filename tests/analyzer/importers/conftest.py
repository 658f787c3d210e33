"""Fixtures for the importer tests: the real captures, and small inputs written on the fly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

EDITED = REPO_ROOT / "tests" / "data" / "real"


@pytest.fixture(scope="session")
def dataplane(samples_dir: Path) -> Path:
    return samples_dir / "qemu-7.2" / "a-stop-eio-dataplane"


@pytest.fixture(scope="session")
def report_sample(samples_dir: Path) -> Path:
    return samples_dir / "qemu-7.2" / "c-report"


@pytest.fixture(scope="session")
def libvirt_log(samples_dir: Path) -> Path:
    return samples_dir / "libvirt-9.0" / "a-stop-eio" / "libvirtd.log"


@pytest.fixture
def write(tmp_path: Path):
    """write(name, text) -> path of a new input file in tmp_path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write
