"""Online scoring's data: live and mirrored answers as golden-dataset rows, and the stored pairs.

The evaluators are the offline gate's (same registry, same names, same configuration, so the same
identities — recorded on every pair) and run in worker processes (:mod:`tunegate.gateway.scoring`,
batched), never in the gateway's event loop or under its GIL. A request becomes a golden-dataset
row (:func:`example_row`: messages, the route's schema, tools, cohort) so the pairs are "a dataset
like any other":
:func:`mirror_runs` returns them as two aligned score tables for ``tunegate gate --mirror``.

A request carries no reference answer, so evaluators that need one (``tool_selection``,
``exact_match``, per-row ``json_validation``...) skip. A route whose release.yaml says
``references: metadata`` trusts the client to send it instead, in ``metadata.reference`` (a JSON
object, or a JSON string of one as the OpenAI SDK requires; ``tunegate replay --with-reference``
sends it): its ``expected``, ``expected_tool_calls``, ``schema`` and ``context`` are validated like
a dataset row's and join the evaluated row. A malformed reference never fails the worker: the row
records why (:data:`REFERENCE_ERROR` in its metadata) and every evaluator skips it with that reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tunegate.store import online as q
from tunegate.store.sqlite import Store

__all__ = ["REFERENCE_ERROR", "REFERENCE_KEYS", "example_row", "failed", "mirror_runs", "output_of", "reference_of",
           "store_mirror_runs"]

#: The dataset-row fields a client may supply in ``metadata.reference``.
REFERENCE_KEYS = ("expected", "expected_tool_calls", "schema", "context")
#: Row-metadata key naming why a request's reference was refused (its pair is then skipped).
REFERENCE_ERROR = "reference_error"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else json.dumps(content)


def reference_of(request: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """``(fields, None)`` from the request's ``metadata.reference``, ``(None, None)`` when it has none,
    ``(None, why)`` when it is malformed: not JSON, not an object, a key other than
    :data:`REFERENCE_KEYS`, or a value a dataset row would refuse (e.g. an invalid JSON Schema)."""
    meta = request.get("metadata")
    ref = meta.get("reference") if isinstance(meta, dict) else None
    if ref is None:
        return None, None
    if isinstance(ref, str):
        try:
            ref = json.loads(ref)
        except json.JSONDecodeError as e:
            return None, f"not JSON ({e.msg} at char {e.pos})"
    if not isinstance(ref, dict):
        return None, f"must be a JSON object, got {type(ref).__name__}"
    unknown = sorted(set(ref) - set(REFERENCE_KEYS))
    if unknown:
        return None, f"unknown key {unknown[0]!r} (allowed: {', '.join(REFERENCE_KEYS)})"
    fields = {k: v for k, v in ref.items() if v is not None}
    why = _row_problem({"id": "reference", "input": "reference check", **fields})
    return (None, why) if why is not None else (fields, None)


def _row_problem(row: dict[str, Any]) -> str | None:
    """Why ``row`` is not a valid dataset row (``field: problem``), or None."""
    from pydantic import ValidationError

    from tunegate.core.example import Example
    from tunegate.errors import field_path

    try:
        Example.model_validate(row)
    except ValidationError as e:
        err = e.errors()[0]
        where = field_path(tuple(err["loc"]), "")
        return f"{where}: {err['msg']}" if where else str(err["msg"])
    return None


def example_row(request_id: str, request: dict[str, Any], cohort: str | None,
                schema: dict[str, Any] | None, *, references: bool = False) -> dict[str, Any]:
    """A gateway request as a golden-dataset row (id = request id). With ``references`` (the route's
    ``references: metadata``) the client's ``metadata.reference`` fields join it; a reference schema
    replaces the route's, as a dataset row's own schema would."""
    msgs = []
    for m in request.get("messages") or []:
        role = m.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            role = "system" if role == "developer" else "user"
        msgs.append({"role": role, "content": _text(m.get("content"))})
    row: dict[str, Any] = {"id": request_id, "messages": msgs or [{"role": "user", "content": ""}],
                           "cohorts": [cohort] if cohort else []}
    if schema is not None:
        row["schema"] = schema
    if request.get("tools"):
        row["tools"] = request["tools"]
    if references:
        fields, why = reference_of(request)
        if why is not None:
            row["metadata"] = {REFERENCE_ERROR: why}
        elif fields:   # checked again with the request's own fields: the worker must never refuse the row
            merged = row | fields
            why = _row_problem(merged)
            if why is None:
                return merged
            row["metadata"] = {REFERENCE_ERROR: why}
    return row


def output_of(text: str | None, tool_calls: Sequence[dict[str, Any]] = (), finish_reason: str | None = None,
              model: str | None = None) -> dict[str, Any]:
    """An OpenAI message (text + tool calls) as a ``ModelOutput`` dict."""
    calls = []
    for tc in tool_calls:
        fn = tc.get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except (TypeError, ValueError):
            args = {"_unparsed": fn.get("arguments")}
        calls.append({"name": str(fn.get("name", "")), "arguments": args if isinstance(args, dict) else {"value": args},
                      "id": tc.get("id")})
    return {"text": text or "", "tool_calls": calls, "finish_reason": finish_reason, "model": model}


def failed(scores: dict[str, dict[str, Any]]) -> bool | None:
    """True when any evaluator judged the answer failed; None when none could judge it (all skipped)."""
    judged = [s for s in scores.values() if s.get("status") == "ok"]
    if not judged:
        return None
    return any(s.get("passed") is False for s in judged)


def mirror_runs(store: Store, route: str) -> dict[str, Any]:
    """A route's mirrored pairs as a paired dataset: ``{row_ids, cohorts, evaluators, base, candidate,
    base_hash, candidate_hash}`` where ``base``/``candidate`` map evaluator → list of scores (None
    where the evaluator skipped or errored), aligned by row. Pairs whose shadow call failed are left
    out and counted in ``shadow_failures`` (the error budget of a gate sees them)."""
    rows = q.pair_rows(store, route)
    if not rows:
        from tunegate.errors import UserError

        raise UserError(f"no mirrored pairs stored for route {route!r} (is mirroring on for it?)", field="--mirror")
    evaluators = rows[-1]["evaluators"]
    names = [e["name"] for e in evaluators]
    keep = [r for r in rows if r["candidate_error"] is None and r["evaluators"] == evaluators]
    out: dict[str, Any] = {"route": route, "evaluators": evaluators, "row_ids": [r["request_id"] for r in keep],
                           "cohorts": [[r["cohort"]] if r["cohort"] else [] for r in keep],
                           "base_hash": keep[-1]["base_hash"] if keep else None,
                           "candidate_hash": keep[-1]["candidate_hash"] if keep else None,
                           "shadow_failures": sum(r["candidate_error"] is not None for r in rows),
                           "other_identities": sum(r["evaluators"] != evaluators for r in rows)}
    for side in ("base", "candidate"):
        out[side] = {n: [(r[f"{side}_scores"].get(n) or {}).get("score")
                         if (r[f"{side}_scores"].get(n) or {}).get("status") == "ok" else None for r in keep]
                     for n in names}
    return out


def store_mirror_runs(store: Store, route: str) -> tuple[str, str]:
    """Materialise a route's mirrored pairs as two stored runs over one dataset (the requests), so
    ``tunegate gate --baseline A --candidate B`` — and so ``gate --mirror`` — gates them with the
    offline paired statistics, per cohort. Returns (baseline run id, candidate run id); the same
    pairs give the same runs again (identity = dataset + candidate + evaluators)."""
    from tunegate.core.dataset import Dataset
    from tunegate.core.example import Example
    from tunegate.core.hashing import content_hash
    from tunegate.core.result import EvalResult, ModelOutput
    from tunegate.errors import UserError

    rows = [r for r in q.pair_rows(store, route) if r["candidate_error"] is None]
    if not rows:
        raise UserError(f"no scored mirrored pairs stored for route {route!r} (is mirroring on for it?)",
                        field="--mirror")
    evaluators = rows[-1]["evaluators"]
    rows = [r for r in rows if r["evaluators"] == evaluators and r["candidate_hash"] == rows[-1]["candidate_hash"]
            and r["base_hash"] == rows[-1]["base_hash"]]
    ds = Dataset.of((Example.model_validate(r["example"]) for r in rows), name=f"mirror:{route}")
    ds_hash = store.put_dataset(ds)
    ids: list[str] = []
    for side in ("base", "candidate"):
        h = rows[-1][f"{side}_hash"]
        store.put_candidate(h, f"{route}/{rows[-1][f'{side}_arm']}", "outputs",
                            {"route": route, "arm": rows[-1][f"{side}_arm"], "source": "gateway mirror"})
        identity = content_hash({"dataset": ds_hash, "candidate": h, "evaluators": evaluators, "mirror": route})
        done = store.latest_finished(identity)
        if done is not None:
            ids.append(done)
            continue
        run = store.create_run(identity=identity, dataset_hash=ds_hash, candidate_hash=h,
                               selection={"mirror": route}, evaluators=evaluators, n_rows=len(rows),
                               meta={"source": "gateway mirror", "route": route})
        for i, r in enumerate(rows):
            text = r[f"{side}_output"]
            scores: dict[str, Sequence[EvalResult]] = {
                n: [EvalResult.model_validate(s)] for n, s in r[f"{side}_scores"].items()}
            store.write_row(run, r["request_id"], i, [ModelOutput(text=text or "")], [None], scores,
                            model_calls=0, cache_hits=0)
        store.finish_run(run)
        ids.append(run)
    return ids[0], ids[1]
