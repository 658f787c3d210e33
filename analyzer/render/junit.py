"""JUnit XML of a check, for CI systems: one test case per rule.

A rule with error findings is a failed test case (its findings in the failure text); a rule
that could not apply to the trace is skipped, with the reason; warnings do not fail a case and
are listed in its ``system-out``. Every text from the trace is made printable (XML 1.0 cannot
carry control characters) and escaped by the XML writer.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from analyzer.result import CheckResult, Finding
from analyzer.text import printable

SUITE_NAME = "blkreplay"


def _line(f: Finding) -> str:
    where = [f"{label}={value}" for label, value in f.where()]
    src = f" [{', '.join(f.src)}]" if f.src else ""
    return printable(f"{f.severity}: {' '.join(where)}: {f.message}{src}")


def render_junit(result: CheckResult) -> str:
    """The JUnit XML document (a string ending with a newline) for `result`."""
    by_rule: dict[str, list[Finding]] = {}
    for f in result.findings:
        by_rule.setdefault(f.rule, []).append(f)
    failures = sum(
        1 for r in result.rules
        if r.id not in result.not_applicable
        and any(f.severity == "error" for f in by_rule.get(r.id, []))
    )
    suites = ET.Element("testsuites", name=SUITE_NAME)
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=SUITE_NAME,
        tests=str(len(result.rules)),
        failures=str(failures),
        errors="0",
        skipped=str(len(result.not_applicable)),
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="verdict", value=result.verdict)
    ET.SubElement(props, "property", name="steps", value=str(result.steps))
    ET.SubElement(props, "property", name="vms", value=str(result.vms))
    for i in result.inputs:
        ET.SubElement(props, "property", name="input",
                      value=printable(f"{i.path} sha256={i.sha256}"))
    for rule in result.rules:
        case = ET.SubElement(suite, "testcase", classname=f"{SUITE_NAME}.{rule.guarantee}",
                             name=rule.id)
        if rule.id in result.not_applicable:
            needs = " / ".join(rule.needs) or "steps of this kind"
            ET.SubElement(case, "skipped", message=f"not applicable: the trace has no {needs}")
            continue
        found = by_rule.get(rule.id, [])
        errors = [f for f in found if f.severity == "error"]
        warnings = [f for f in found if f.severity == "warning"]
        if errors:
            fail = ET.SubElement(case, "failure", type=rule.id,
                                 message=f"{len(errors)} finding(s): {rule.title}")
            fail.text = "\n".join(_line(f) for f in errors)
        if warnings:
            out = ET.SubElement(case, "system-out")
            out.text = "\n".join(_line(f) for f in warnings)
    ET.indent(suites)
    document = ET.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + document + "\n"
