"""The gate's contamination guard: gated rows that overlap the candidate's tuning data.

A tuning run records what it trained on in the candidate's lineage::

    lineage["tuning_data"] = {"path": "data/golden.jsonl", "hash": "ds-…", "split": "train", "rows": 412}
    # or a list of such records (several files); tuning_data_record(path) builds one
    # "split" may be a list (prompt optimisers tune on ["train", "dev"]);
    # DPO adds "preferences": {"path": "prefs.jsonl", "digest": "sha256:…", "pairs": n}

Before the comparison the gate loads each named file, verifies its hash (a file that changed since
tuning is not the data the candidate saw), and checks every gated row against it with
:func:`~tunegate.checks.contamination.check_contamination`. Contaminated rows are excluded from
the comparison unless ``allow_contaminated``; either way the verdict lists them. A missing file,
a hash mismatch or an unreadable file is a *warning* in the verdict ("could not be checked"),
never a silent pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tunegate.checks.contamination import check_contamination
from tunegate.checks.textrows import DEFAULT_FIELDS, TextRows, load_text_rows, rows_from_dataset
from tunegate.core.example import Example
from tunegate.core.verdict import Verdict
from tunegate.engine.gate.pairing import PairedRuns
from tunegate.errors import UserError
from tunegate.store.sqlite import Store

__all__ = ["GateContamination", "exclude_rows", "guard_contamination", "tuning_data_record"]

_LISTED = 10


def _hashes(rows: TextRows) -> set[str]:
    """Every identity a lineage record may name for this file: content hash (whole file, or the
    split(s) it used) and the file's SHA-256 (bare or ``sha256:`` prefixed)."""
    out = {h for h in (rows.hash, *rows.extra.get("split_hashes", {}).values()) if h}
    sha = rows.extra.get("file_sha256")
    if sha:
        out |= {sha, f"sha256:{sha}"}
    return out


def tuning_data_record(path: str | Path, split: str | None = "train") -> dict[str, Any]:
    """The ``lineage["tuning_data"]`` record for a tuning file (what a tuning run should store).

    ``split`` applies to golden datasets (the rows tuned on); a plain JSONL file (a DPO preference
    file) is used whole and records ``split: None``.
    """
    rows = load_text_rows(path)
    use_split = split if rows.kind == "golden" else None
    n = sum(1 for r in rows.rows if use_split is None or r.split == use_split)
    return {"path": str(path), "hash": rows.hash, "split": use_split, "rows": n}


@dataclass
class GateContamination:
    """What the guard found; ``to_dict`` goes into verdict.json as ``contamination``."""

    status: str = "not_applicable"  #: not_applicable | clean | contaminated | unchecked
    allow_contaminated: bool = False
    sources: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    gated_rows: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "allow_contaminated": self.allow_contaminated, "sources": self.sources,
                "contaminated": len(self.rows), "excluded": self.excluded, "rows": self.rows,
                "warnings": self.warnings, "gated_rows": self.gated_rows, "params": self.params}

    def reasons(self) -> list[str]:
        """Sentences for the verdict's reasons (empty when nothing to say)."""
        out: list[str] = []
        if self.rows:
            ids = ", ".join(r["id"] for r in self.rows[:_LISTED]) + (" …" if len(self.rows) > _LISTED else "")
            what = "were excluded from the comparison" if self.excluded else \
                "were kept (allow_contaminated) — their scores may be memorised"
            out.append(f"{len(self.rows)} of {self.gated_rows} gated rows overlap the candidate's tuning data and "
                       f"{what}: {ids}")
        out += [f"contamination could not be checked: {w}" for w in self.warnings]
        return out

    def annotate(self, verdict: Verdict) -> Verdict:
        """The verdict with the guard's sentences appended to its reasons."""
        extra = self.reasons()
        return verdict.model_copy(update={"reasons": [*verdict.reasons, *extra]}) if extra else verdict


def exclude_rows(paired: PairedRuns, ids: set[str]) -> PairedRuns:
    """``paired`` without the rows in ``ids`` (arrays, statuses, cohorts and the unpaired lists)."""
    keep = [i for i, rid in enumerate(paired.row_ids) if rid not in ids]

    def pick(xs: list[Any]) -> list[Any]:
        return [xs[i] for i in keep]

    evs = [replace(e, base=e.base[keep], cand=e.cand[keep], base_status=pick(e.base_status),
                   cand_status=pick(e.cand_status), base_reason=pick(e.base_reason), cand_reason=pick(e.cand_reason))
           for e in paired.evaluators]
    return replace(paired, row_ids=pick(paired.row_ids), cohorts=pick(paired.cohorts), groups=pick(paired.groups),
                   evaluators=evs, only_in_baseline=[r for r in paired.only_in_baseline if r not in ids],
                   only_in_candidate=[r for r in paired.only_in_candidate if r not in ids])


def _entries(td: Any) -> list[Any]:
    return list(td) if isinstance(td, list) else [td]


def _splits(value: Any) -> list[str]:
    """A lineage ``split``: one name, a list of names (prompt tuning uses train + dev), or none."""
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


def _verified(info: dict[str, Any], rows: TextRows, claimed: Any, warnings: list[str]) -> bool:
    if not claimed:
        warnings.append(f"lineage names {info['path']} without a hash; its content cannot be verified")
        info["status"] = "no_hash"
        return False
    if claimed not in _hashes(rows):
        warnings.append(f"tuning data file {info['path']} changed since tuning (lineage hash "
                        f"{str(claimed)[:19]}…, file now {str(rows.hash)[:19]}…)")
        info.update(status="hash_mismatch", file_hash=rows.hash)
        return False
    return True


def _read(path: str, info: dict[str, Any], warnings: list[str]) -> TextRows | None:
    if not Path(path).is_file():
        warnings.append(f"tuning data file {path} is missing")
        info["status"] = "missing"
        return None
    try:
        return load_text_rows(path, DEFAULT_FIELDS)
    except UserError as e:
        warnings.append(f"tuning data file cannot be read ({e})")
        info["status"] = "unreadable"
        return None


def _load_entry(entry: Any, warnings: list[str]) -> list[tuple[dict[str, Any], TextRows | None]]:
    """The train rows one lineage record names: the dataset's split(s) and, for DPO, the preference
    file (``preferences: {path, digest}``) minus the pairs the tuner skipped as held-out rows."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        warnings.append(f"lineage tuning_data entry {entry!r} has no 'path'")
        return [({"entry": entry, "status": "malformed"}, None)]
    splits = _splits(entry.get("split"))
    info: dict[str, Any] = {"path": entry["path"], "hash": entry.get("hash"), "split": entry.get("split"),
                            "rows_recorded": entry.get("rows")}
    out: list[tuple[dict[str, Any], TextRows | None]] = []
    rows = _read(entry["path"], info, warnings)
    if rows is not None and splits and rows.kind == "golden":
        rows.extra["split_hashes"] = {"+".join(splits): _split_hash(Path(entry["path"]), splits)}
    if rows is not None and _verified(info, rows, entry.get("hash"), warnings):
        held_out = {r.id for r in rows.rows if splits and r.split not in splits}
        if splits and any(r.split for r in rows.rows):
            rows.rows = [r for r in rows.rows if r.split in splits]
        info.update(status="checked", rows_checked=len(rows.rows), fields=rows.fields)
        out.append((info, rows))
    else:
        out.append((info, None))
        held_out = set()
    pref = entry.get("preferences")
    if isinstance(pref, dict) and isinstance(pref.get("path"), str):
        pinfo: dict[str, Any] = {"path": pref["path"], "hash": pref.get("digest") or pref.get("hash"),
                                 "split": None, "rows_recorded": pref.get("pairs"), "kind": "preferences"}
        prow = _read(pref["path"], pinfo, warnings)
        if prow is not None and _verified(pinfo, prow, pinfo["hash"], warnings):
            held_prompts = _held_out_prompts(entry["path"], splits) if splits else set()
            prow.rows = [r for r in prow.rows if r.id not in held_out
                         and (r.segments[0].strip() if r.segments else "") not in held_prompts]
            pinfo.update(status="checked", rows_checked=len(prow.rows), fields=prow.fields)
            out.append((pinfo, prow))
        else:
            out.append((pinfo, None))
    return out


def _held_out_prompts(path: str, splits: list[str]) -> set[str]:
    """Prompts of the dataset's rows outside ``splits``: DPO tuning skips pairs with these prompts."""
    from tunegate.core.loading import load_dataset

    try:
        ds = load_dataset(path)
    except UserError:
        return set()
    return {ex.prompt_text().strip() for ex in ds if ds.split_of(ex) not in splits}


def _split_hash(p: Path, splits: list[str]) -> str | None:
    from tunegate.core.loading import load_dataset

    try:
        return load_dataset(p).split(splits).hash  # type: ignore[arg-type]
    except UserError:
        return None


def guard_contamination(store: Store, paired: PairedRuns, *, allow_contaminated: bool = False,
                        **check: Any) -> tuple[PairedRuns, GateContamination]:
    """Check the gated rows against the candidate's tuning data; exclude overlaps unless allowed."""
    cand = store.candidate(paired.candidate.candidate_hash) or {}
    td = (cand.get("lineage") or {}).get("tuning_data")
    res = GateContamination(allow_contaminated=allow_contaminated, gated_rows=len(paired.row_ids))
    if not td:
        return paired, res
    train_sets: list[TextRows] = []
    for entry in _entries(td):
        for info, rows in _load_entry(entry, res.warnings):
            res.sources.append(info)
            if rows is not None:
                train_sets.append(rows)
    if not train_sets:
        res.status = "unchecked"
        return paired, res
    examples = [Example.model_validate(paired.rows_data[rid]) for rid in paired.row_ids if rid in paired.rows_data]
    gated = rows_from_dataset(examples, DEFAULT_FIELDS, source="gated rows")
    report = check_contamination(train_sets, gated, **check)
    res.params = report.params
    res.rows = [{"id": r.eval_id, "method": r.method, "score": r.score, "span": r.span,
                 "train_ids": r.train_ids, "train_sources": sorted({m.train_source for m in r.matches})}
                for r in report.rows]
    res.status = "contaminated" if report.rows else "clean"
    if report.rows and not allow_contaminated:
        ids = set(report.ids())
        if len(ids) >= len(paired.row_ids):
            raise UserError(f"all {len(paired.row_ids)} gated rows overlap the candidate's tuning data; nothing is "
                            "left to compare (gate on held-out rows, or pass --allow-contaminated to gate anyway)",
                            field="tuning_data")
        res.excluded = [r["id"] for r in res.rows]
        paired = exclude_rows(paired, ids)
    return paired, res
