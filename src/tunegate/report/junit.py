"""``junit.xml``: one test case per gate check, so any CI shows which rule failed.

Two rules CI systems impose, and why they matter here:

* Test cases are identified by (classname, name): repeated names collapse into one line or are
  dropped. The classname says where a check lives (``tunegate.<policy>.<evaluator>.<cohort>``) and
  the name what it is; any remaining clash gets a ``#2`` suffix, so every check is listed.
* A CI page shows ``<skipped>`` in grey or green, never red. An *undecided* rule means the gate
  could not show the candidate is safe, so by default it is a ``<failure>`` (type
  ``GateRuleUndecided``); ``inconclusive="skipped"`` reports it as skipped for teams that want
  INCONCLUSIVE to warn without failing the build. A ``gate decision`` test case carries the verdict
  itself (failure on BLOCK, and on INCONCLUSIVE unless skipped), so an undecided gate is never green.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Literal

from tunegate.core.verdict import RuleResult
from tunegate.engine.gate.runs import GateResult
from tunegate.engine.stats.results import OVERALL
from tunegate.report.forgetting_md import forgetting_junit

__all__ = ["INCONCLUSIVE_MODES", "InconclusiveMode", "render_junit"]

InconclusiveMode = Literal["failure", "skipped"]
INCONCLUSIVE_MODES: tuple[str, ...] = ("failure", "skipped")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def _ids(policy: str, r: RuleResult) -> tuple[str, str]:
    """(classname, name): ``tunegate.<policy>.<evaluator>.<overall|cohort_x>``, ``<label> (<evaluator> <rule>)``."""
    where = "overall" if r.cohort in (None, OVERALL) else f"cohort_{_slug(r.cohort or '')}"
    classname = f"tunegate.{_slug(policy)}.{_slug(r.evaluator or r.rule)}.{where}"
    what = " ".join(x for x in (r.evaluator, r.rule if r.rule != r.name else None) if x)
    name = f"{r.name} ({what})" if what else r.name
    if r.scope:
        name += f" [rows {r.scope}]"
    return classname, name


def render_junit(res: GateResult, *, inconclusive: InconclusiveMode = "failure") -> str:
    """The verdict as a JUnit XML test suite (see the module docstring for the mapping)."""
    if inconclusive not in INCONCLUSIVE_MODES:
        raise ValueError(f"inconclusive must be one of {INCONCLUSIVE_MODES}, not {inconclusive!r}")
    v = res.verdict
    rules = v.rules
    undecided_fail = inconclusive == "failure"
    failures = sum(1 for r in rules if r.status == "fail" or (r.status == "undecided" and undecided_fail))
    skipped = sum(1 for r in rules if r.status == "skipped" or (r.status == "undecided" and not undecided_fail))
    decision_fails = v.decision == "BLOCK" or (v.decision == "INCONCLUSIVE" and undecided_fail)
    decision_skipped = v.decision == "INCONCLUSIVE" and not undecided_fail
    suite = ET.Element("testsuite", name=f"tunegate gate ({res.policy.name} v{res.policy.version})",
                       tests=str(len(rules) + 1), failures=str(failures + decision_fails), errors="0",
                       skipped=str(skipped + decision_skipped))
    props = ET.SubElement(suite, "properties")
    for key, val in (("decision", v.decision), ("policy_hash", res.policy.hash),
                   ("dataset_hash", res.paired.baseline.dataset_hash),
                   ("baseline_run", res.paired.baseline.id), ("candidate_run", res.paired.candidate.id),
                   ("inconclusive_as", inconclusive)):
        ET.SubElement(props, "property", name=key, value=str(val))
    top = ET.SubElement(suite, "testcase", classname=f"tunegate.{_slug(res.policy.name)}", name="gate decision")
    summary = " ".join(v.reasons[:3])
    if decision_fails:
        ET.SubElement(top, "failure", message=f"{v.decision}: {v.reasons[0] if v.reasons else ''}",
                      type=f"Gate{v.decision.title()}").text = summary
    elif decision_skipped:
        ET.SubElement(top, "skipped", message=f"INCONCLUSIVE: {v.reasons[0] if v.reasons else ''}")
    else:
        ET.SubElement(top, "system-out").text = summary
    seen: dict[tuple[str, str], int] = {}
    forgetting_case = "forgetting"
    for r in rules:
        classname, name = _ids(res.policy.name, r)
        count = seen[(classname, name)] = seen.get((classname, name), 0) + 1
        if count > 1:
            name += f" #{count}"
        case = ET.SubElement(suite, "testcase", classname=classname, name=name)
        if r.name == "forgetting":  # the probe's details go into this case
            forgetting_case = name
        if r.status == "fail":
            ET.SubElement(case, "failure", message=r.evidence, type="GateRuleFailed").text = r.evidence
        elif r.status == "undecided":
            msg = "undecided: " + r.evidence
            if undecided_fail:
                ET.SubElement(case, "failure", message=msg, type="GateRuleUndecided").text = msg
            else:
                ET.SubElement(case, "skipped", message=msg)
        elif r.status == "skipped":
            ET.SubElement(case, "skipped", message=r.evidence)
        else:
            ET.SubElement(case, "system-out").text = r.evidence
    forgetting_junit(suite, res.forgetting, rule_name=forgetting_case)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
