"""Every command rejects an unknown --format the same way: one line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.cli import main

REPO = Path(__file__).resolve().parents[2]
TRACE = REPO / "traces" / "fixed"


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.mark.parametrize(
    "argv,choices",
    [
        (["check", str(TRACE), "-f", "xml"], "text, json, junit"),
        (["check", str(TRACE), "--format", "xml", "-o", "{out}"], "text, json, junit"),
        (["replay", str(TRACE), "-f", "xml"], "text, jsonl"),
        (["report", str(TRACE), "-o", "{out}", "--format", "xml"], "html, md, json"),
        (["report", str(TRACE), "-o", "{out}.html", "-f", "xml"], "html, md, json"),
        (["import", str(REPO / "README.md"), "-o", "{out}", "--format", "xml"],
         "auto, qmp, qemu-log, libvirt-log, domain-log, virsh-events, journal-json, journal-export, journal-short, kubevirt-log, qemu-stap, qemu-monitor-event"),
    ],
    ids=["check", "check-to-file", "replay", "report", "report-html-extension", "import"],
)
def test_an_unknown_format_is_one_line_and_exit_2(argv, choices, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run([a.replace("{out}", str(out)) for a in argv], capsys)
    assert code == 2
    assert stdout == ""
    assert stderr == f"blkreplay: error: unknown format 'xml' (choose from {choices})\n"
    assert list(tmp_path.iterdir()) == []


def test_a_report_whose_format_cannot_be_told_is_one_line_and_exit_2(tmp_path, capsys):
    code, stdout, stderr = run(["report", str(TRACE), "-o", str(tmp_path / "x.pdf")], capsys)
    assert (code, stdout) == (2, "")
    assert stderr == (f"blkreplay: error: cannot tell the report format from "
                      f"'{tmp_path / 'x.pdf'}'; use --format html|md|json\n")
    assert list(tmp_path.iterdir()) == []
