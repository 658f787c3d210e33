"""The work list of issue #12: every hostile-input test that fails against today's code.

Each entry is a test (node id relative to tests/hostile/, as pytest names it) -> why it fails
today, then ``->`` where the fix belongs. ``conftest.py`` marks each one
``xfail(strict=True)``, so CI stays green while the list is worked off, and a test that starts
to pass fails loudly until its line here is deleted. Keep it grouped by file.
"""

from __future__ import annotations

_CHECK_O = "-> analyzer/cli/check.py _write: go through analyzer.outputs.write_output"
_REPORT_O = "-> analyzer/report write_report + analyzer/cli/report.py: analyzer.outputs"
_IMPORT_O = "-> analyzer/importers import_traces/_write: analyzer.outputs (output_dir for a directory)"

KNOWN_BROKEN: dict[str, str] = {
    # ---- outputs -------------------------------------------------------------------------
    "test_outputs.py::test_output_equal_to_the_input_is_refused[check]":
        f"check -f json -o INPUT overwrites the input {_CHECK_O}",
    "test_outputs.py::test_output_equal_to_the_input_is_refused[check-text]":
        f"check -o INPUT overwrites the input {_CHECK_O}",
    "test_outputs.py::test_output_equal_to_the_input_is_refused[report]":
        f"report -f json -o INPUT overwrites the input {_REPORT_O}",
    "test_outputs.py::test_output_equal_to_the_input_is_refused[import]":
        f"import LOG -o LOG: NotADirectoryError traceback (mkdir LOG/vm=vm0) {_IMPORT_O}",
    "test_outputs.py::test_report_named_like_a_segment_into_the_trace_dir_is_refused":
        f"report -o TRACE_DIR/seg-000001.parquet adds a segment to the audited recording {_REPORT_O}",
    "test_outputs.py::test_check_into_the_manifest_is_refused":
        f"check -o TRACE_DIR/manifest.json replaces the recording's manifest {_CHECK_O}",
    "test_outputs.py::test_report_into_another_recording_as_a_parquet_name_is_refused":
        f"a Markdown report named notes.parquet is written into a trace directory {_REPORT_O}",
    **{
        f"test_outputs.py::test_every_bad_output_is_one_line_and_exit_2[check-{place}]":
            f"check -o {place}: {why} {_CHECK_O}"
        for place, why in {
            "missing-dir": "FileNotFoundError traceback (mkstemp)",
            "existing-dir": "IsADirectoryError traceback (os.replace)",
            "trailing-slash": "'-o new/' silently writes a file named 'new'",
            "under-a-file": "NotADirectoryError traceback (mkstemp)",
            "deep-under-a-file": "NotADirectoryError traceback (mkstemp)",
            "proc": "FileNotFoundError traceback (mkstemp in /proc)",
            "proc-sys": "FileNotFoundError traceback (mkstemp in /proc/sys)",
            "empty": "'' is '.': OSError EBUSY traceback (rename onto '.')",
        }.items()
    },
    **{
        f"test_outputs.py::test_every_bad_output_is_one_line_and_exit_2[report-{place}]":
            f"report -o {place}: {why} {_REPORT_O}"
        for place, why in {
            "missing-dir": "FileNotFoundError traceback (mkstemp)",
            "existing-dir": "IsADirectoryError traceback (os.replace)",
            "trailing-slash": "'-o new/' silently writes a file named 'new'",
            "under-a-file": "NotADirectoryError traceback (mkstemp)",
            "deep-under-a-file": "NotADirectoryError traceback (mkstemp)",
            "proc": "FileNotFoundError traceback (mkstemp in /proc)",
            "proc-sys": "FileNotFoundError traceback (mkstemp in /proc/sys)",
            "empty": "'' is '.': OSError EBUSY traceback (rename onto '.')",
        }.items()
    },
    **{
        f"test_outputs.py::test_every_bad_output_is_one_line_and_exit_2[import-{place}]":
            f"import -o {place}: {why} {_IMPORT_O}"
        for place, why in {
            "missing-dir": "creates the missing parent directories (mkdir parents=True)",
            "existing-dir": "writes vm=*/part-0.parquet into an existing directory",
            "trailing-slash": "creates the missing directory",
            "under-a-file": "NotADirectoryError traceback (mkdir)",
            "deep-under-a-file": "NotADirectoryError traceback (mkdir)",
            "proc": "NotADirectoryError traceback (mkdir under /proc)",
            "proc-sys": "FileNotFoundError traceback (mkdir under /proc/sys)",
            "empty": "'' is '.': writes vm=vm0/part-0.parquet into the current directory",
        }.items()
    },
    "test_outputs.py::test_check_output_beyond_the_file_size_limit":
        f"EFBIG: check writes a truncated file and exits 0 (the write error is lost) {_CHECK_O}",
    "test_outputs.py::test_report_output_beyond_the_file_size_limit":
        f"EFBIG: OSError traceback from write_report {_REPORT_O}",
    "test_outputs.py::test_import_output_beyond_the_file_size_limit":
        f"EFBIG: OSError traceback from tracedir.write_table {_IMPORT_O}",
    "test_outputs.py::test_import_into_an_existing_output_dir_does_not_mix_old_parts":
        f"import -o DIR keeps stale vm=*/ parts beside the new ones {_IMPORT_O}",
}
