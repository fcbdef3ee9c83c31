"""``junit.xml``: one test case per gate rule, so any CI shows which rule failed."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tunegate.engine.gate.runs import GateResult
from tunegate.report.forgetting_md import forgetting_junit

__all__ = ["render_junit"]


def render_junit(res: GateResult) -> str:
    rules = res.verdict.rules
    failures = sum(1 for r in rules if r.status == "fail")
    skipped = sum(1 for r in rules if r.status in ("undecided", "skipped"))
    suite = ET.Element("testsuite", name=f"tunegate gate ({res.policy.name} v{res.policy.version})",
                       tests=str(len(rules)), failures=str(failures), errors="0", skipped=str(skipped))
    props = ET.SubElement(suite, "properties")
    for k, v in (("decision", res.verdict.decision), ("policy_hash", res.policy.hash),
                 ("dataset_hash", res.paired.baseline.dataset_hash),
                 ("baseline_run", res.paired.baseline.id), ("candidate_run", res.paired.candidate.id)):
        ET.SubElement(props, "property", name=k, value=str(v))
    for r in rules:
        case = ET.SubElement(suite, "testcase", classname=f"tunegate.{r.rule}", name=r.name)
        if r.status == "fail":
            ET.SubElement(case, "failure", message=r.evidence, type="GateRuleFailed").text = r.evidence
        elif r.status == "undecided":
            msg = r.evidence + (f" (about {r.rows_needed} rows needed)" if r.rows_needed else "")
            ET.SubElement(case, "skipped", message=f"undecided: {msg}")
        elif r.status == "skipped":
            ET.SubElement(case, "skipped", message=r.evidence)
        else:
            ET.SubElement(case, "system-out").text = r.evidence
    forgetting_junit(suite, res.forgetting)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
