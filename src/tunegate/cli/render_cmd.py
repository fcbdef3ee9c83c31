"""``tunegate render``: the exact messages one row sends to the model, before anything is run.

The prompt a row sends is the candidate's template compiled with the row's fields, with the
row's context and JSON Schema added as the run would add them, and the row's tools offered when
the candidate offers tools. It is built by the same function the run executor uses
(:func:`tunegate.engine.run.rows.requests_for`), so what is printed is what is sent. Nothing is
written: no run, no dataset, no prompt version; a ``name@label`` prompt reference is only read
from the registry.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.panel import Panel

from tunegate.cli import common
from tunegate.cli.prompts_cmd import resolve_candidates
from tunegate.core.candidate import CandidateSpec, load_candidate
from tunegate.core.loading import load_dataset
from tunegate.core.request import GenerationRequest
from tunegate.engine.run.rows import requests_for
from tunegate.errors import UserError

__all__ = ["register", "request_json"]


def request_json(cand: CandidateSpec, req: GenerationRequest) -> dict[str, Any]:
    """The request as the candidate's backend sends it: the OpenAI body for ``openai``, else the
    messages, tools and decoding params the backend receives (a local model applies its own chat
    template to these messages)."""
    if cand.backend == "openai" and cand.base_url:
        from tunegate.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(cand.base_url, cand.model, adapter=cand.adapter).request_body(req)
    body: dict[str, Any] = {"model": cand.model, "messages": [m.model_dump(mode="json", exclude_none=True)
                                                              for m in req.messages]}
    if req.tools:
        body["tools"] = list(req.tools)
    body["params"] = {**req.params.model_dump(mode="json", exclude={"n", "seed"}), "seed": req.seed}
    return body


@click.command("render")
@click.option("--candidate", "candidate_path", required=True, type=click.Path(dir_okay=False),
              help="Candidate YAML.")
@click.option("--dataset", "dataset_path", required=True, type=click.Path(dir_okay=False),
              help="Golden dataset (.jsonl, .csv, .yaml).")
@click.option("--row", "row_ids", multiple=True, required=True, help="Row id to render (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the request body as JSON (one line per row).")
@click.pass_obj
def render_command(obj: common.Context, candidate_path: str, dataset_path: str, row_ids: tuple[str, ...],
                   as_json: bool) -> int:
    """Print the exact messages (and tools) ROW sends with CANDIDATE, schema and context included.

    Commits nothing: no run is stored and no prompt version is created.
    """
    ds = load_dataset(dataset_path)
    cand = resolve_candidates(obj, load_candidate(candidate_path))[0]
    by_id = {ex.id: ex for ex in ds.examples}
    missing = [r for r in row_ids if r not in by_id]
    if missing:
        near = [i for i in by_id if any(m in i for m in missing)][:5]
        hint = f"; similar: {', '.join(near)}" if near else ""
        raise UserError(f"no row {', '.join(map(repr, missing))} in the dataset{hint}", file=dataset_path,
                        field="--row")
    con = common.out_console()
    for rid in row_ids:
        req = requests_for(cand, by_id[rid])[0]
        body = request_json(cand, req)
        if as_json:
            common.print_json({"row": rid, "candidate": cand.name, "request": body})
            continue
        con.print(f"[bold]row {common.escape(rid)}[/] · candidate {common.escape(cand.name)} "
                  f"({cand.backend}, {common.escape(cand.model)}) · {len(req.messages)} message(s)"
                  + (f" · {cand.params.n} samples, seeds {req.seed}..{req.seed + cand.params.n - 1}"
                     if cand.params.n > 1 else ""))
        for m in req.messages:
            text = m.content if m.content is not None else ""
            if m.tool_calls:
                text += ("\n" if text else "") + "\n".join(
                    f"[tool call] {c.name}({json.dumps(c.arguments, ensure_ascii=False)})" for c in m.tool_calls)
            con.print(Panel(common.escape(text), title=m.role, title_align="left", expand=True))
        if req.tools:
            names = ", ".join(str(t.get("name") or t.get("function", {}).get("name", "?")) for t in req.tools)
            con.print(f"[bold]tools offered[/] ({len(req.tools)}): {common.escape(names)}")
        elif by_id[rid].tools and not cand.tools:
            con.print("[dim]the row has tools, but the candidate does not offer them (tools: false)[/]")
        p = cand.params
        con.print(f"[dim]temperature {p.temperature} · top_p {p.top_p} · max_tokens {p.max_tokens} · "
                  f"seed {req.seed}{' · stop ' + repr(p.stop) if p.stop else ''}[/]")
    return 0


def register(group: click.Group) -> None:
    group.add_command(render_command)
