"""The CLI tests use the importers' sample fixtures (real captures, a file writer)."""

from tests.analyzer.importers.conftest import dataplane, libvirt_log, report_sample, write

__all__ = ["dataplane", "libvirt_log", "report_sample", "write"]
