"""``tunegate prompts ...``: the prompt registry (versions, labels, history, diff, strict compile).

Read-only commands never create a database: asking about prompts in a store that does not exist
is an input error (exit 2), not a reason to leave an empty file behind. ``resolve_candidates`` is
the one place the CLI turns ``prompt: name@label`` in candidate files into registry content.
"""

from __future__ import annotations

import getpass
import json
import os
from typing import Any

import click
from rich.table import Table

from tunegate.cli import common
from tunegate.core.candidate import CandidateSpec
from tunegate.errors import UserError
from tunegate.prompts import LATEST, PromptRegistry, PromptVersion, load_prompt_file, resolve_candidate
from tunegate.prompts.resolve import is_resolved
from tunegate.store.sqlite import Store
from tunegate.store.url import StoreURL, parse_store_url

__all__ = ["prompts_group", "register", "resolve_candidates"]


def _db_path(obj: common.Context) -> StoreURL:
    return parse_store_url(obj.db)  # a SQLite path or a postgresql:// URL (which always "exists")


def _existing_store(obj: common.Context) -> Store:
    path = _db_path(obj)
    if str(path) != ":memory:" and not path.exists():
        raise UserError(f"no prompt registry at {path}: nothing has been committed yet "
                        "(tunegate prompts commit NAME --file prompt.yaml -m MESSAGE)", field="--db")
    return Store(path)


def resolve_candidates(obj: common.Context, *cands: CandidateSpec) -> list[CandidateSpec]:
    """Candidates with registry references (``prompt: name@label``) filled from the store.

    Opens the store only when some candidate has a reference, and never creates it: a reference
    into a database that does not exist is a UserError naming the candidate file.
    """
    if all(is_resolved(c) for c in cands):
        return list(cands)
    path = _db_path(obj)
    if str(path) != ":memory:" and not path.exists():
        c = next(c for c in cands if not is_resolved(c))
        raise UserError(f"cannot resolve {c.prompt.ref!r}: no prompt registry at {path} "
                        "(commit the prompt with `tunegate prompts commit`)", file=c.source, field="prompt")
    with Store(path) as store:
        reg = PromptRegistry(store)
        return [resolve_candidate(c, reg) for c in cands]


@click.group("prompts")
def prompts_group() -> None:
    """Versioned prompts: commit, label (production/staging...), diff, history, compile.

    \b
    References: NAME (latest), NAME@v3 or NAME@3, NAME@production (a label).
    Candidates use them as   prompt: support-agent@production
    """


def _labels_cell(labels: dict[str, int]) -> str:
    return ", ".join(f"{k}→v{v}" for k, v in sorted(labels.items())) or "—"


@prompts_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def list_command(obj: common.Context, as_json: bool) -> int:
    """Every prompt: latest version, labels, number of versions."""
    path = _db_path(obj)
    rows: list[dict[str, Any]] = []
    if str(path) == ":memory:" or path.exists():
        with Store(path) as store:
            reg = PromptRegistry(store)
            for s in store.prompt_names():
                latest = reg.get(s["name"])
                rows.append({"name": s["name"], "latest": latest.ref, "versions": s["versions"],
                             "labels": reg.labels(s["name"]), "updated_at": s["updated_at"],
                             "message": latest.message})
    if as_json:
        common.print_json(rows)
        return 0
    con = common.out_console()
    if not rows:
        con.print("no prompts yet (tunegate prompts commit NAME --file prompt.yaml -m MESSAGE)")
        return 0
    t = Table(show_edge=False, header_style="bold")
    for col in ("name", "latest", "versions", "labels", "updated", "message"):
        t.add_column(col, justify="right" if col == "versions" else "left", no_wrap=col in ("name", "latest"))
    for r in rows:
        t.add_row(common.escape(r["name"]), r["latest"].split("@")[1], str(r["versions"]), _labels_cell(r["labels"]),
                  r["updated_at"][:19].replace("T", " "), common.escape(r["message"]))
    con.print(t)
    return 0


def _print_version(v: PromptVersion, latest: int) -> None:
    con = common.out_console()
    tags = v.labels + ([LATEST] if v.version == latest else [])
    con.print(f"[bold]{v.ref}[/]" + (f"  ({', '.join(tags)})" if tags else ""))
    con.print(f"hash     {v.hash}\ncreated  {v.created_at}" + (f" by {common.escape(v.author)}" if v.author else ""))
    con.print(f"message  {common.escape(v.message)}")
    if v.lineage:
        con.print(f"lineage  {common.escape(json.dumps(v.lineage, sort_keys=True))}")
    t = v.template
    sections = [("system", t.system or "(none)"), ("user", t.user)]
    for i, shot in enumerate(t.few_shot, start=1):
        sections += [(f"few_shot {i} input", shot.input), (f"few_shot {i} output", shot.output)]
    for title, text in sections:
        con.print(f"\n[bold cyan]── {title} ──[/]")
        con.print(text, markup=False, highlight=False, soft_wrap=True)
    con.print(f"\ninclude_context: {str(t.include_context).lower()} · include_schema: {str(t.include_schema).lower()}")


@prompts_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the version as JSON.")
@click.pass_obj
def show_command(obj: common.Context, ref: str, as_json: bool) -> int:
    """Show one version: REF is NAME, NAME@vN or NAME@LABEL."""
    with _existing_store(obj) as store:
        reg = PromptRegistry(store)
        v = reg.get(ref)
        latest = reg.get(v.name).version
    if as_json:
        common.print_json({**v.model_dump(mode="json", exclude={"reused"}), "ref": v.ref, "latest": latest})
    else:
        _print_version(v, latest)
    return 0


def _author(author: str | None) -> str | None:
    if author:
        return author
    if os.environ.get("TUNEGATE_AUTHOR"):
        return os.environ["TUNEGATE_AUTHOR"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


@prompts_group.command("commit")
@click.argument("name")
@click.option("--file", "file_path", required=True, type=click.Path(dir_okay=False),
              help="YAML/JSON with system, user, few_shot, include_context, include_schema.")
@click.option("-m", "--message", required=True, help="Why this version exists.")
@click.option("--label", "labels", multiple=True, help="Point this label at the new version (repeatable).")
@click.option("--author", default=None, help="Default: $TUNEGATE_AUTHOR or the login name.")
@click.option("--json", "as_json", is_flag=True, help="Print the version as JSON.")
@click.pass_obj
def commit_command(obj: common.Context, name: str, file_path: str, message: str, labels: tuple[str, ...],
                   author: str | None, as_json: bool) -> int:
    """Commit the prompt in --file as the next version of NAME (identical content: no new version)."""
    from tunegate.prompts.models import check_label, check_name

    check_name(name)
    for label in labels:
        check_label(label)
    if not message.strip():
        raise UserError("a commit needs a message saying why this version exists", field="--message")
    template = load_prompt_file(file_path)  # everything is validated before the store is opened
    with obj.store() as store:
        reg = PromptRegistry(store)
        v = reg.commit(name, template, message, author=_author(author), labels=labels,
                       lineage={"source_file": str(file_path)})
    if as_json:
        common.print_json({**v.model_dump(mode="json"), "ref": v.ref})
        return 0
    con = common.out_console()
    if v.reused:
        con.print(f"no change: content identical to {v.ref} (latest); nothing committed")
    else:
        con.print(f"committed [bold]{v.ref}[/] ({v.hash[:19]})")
    if labels:
        con.print("labels: " + ", ".join(f"{label}→v{v.version}" for label in labels))
    return 0


@prompts_group.command("label")
@click.argument("name")
@click.argument("label")
@click.argument("version")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def label_command(obj: common.Context, name: str, label: str, version: str, as_json: bool) -> int:
    """Point LABEL of NAME at VERSION (3 or v3); the move is kept in the history."""
    from tunegate.prompts.models import check_label, check_name, parse_version

    check_name(name)
    check_label(label)
    parse_version(version)
    with _existing_store(obj) as store:
        move = PromptRegistry(store).label(name, label, version)
    if as_json:
        common.print_json(move.model_dump(mode="json"))
    elif not move.moved:
        common.out_console().print(f"{name}@{label} already points at v{move.version}; nothing changed")
    else:
        before = f"v{move.previous}" if move.previous is not None else "(new)"
        common.out_console().print(f"{name}@{label}: {before} → [bold]v{move.version}[/]")
    return 0


@prompts_group.command("diff")
@click.argument("ref_a")
@click.argument("ref_b")
@click.option("-U", "--context", "context", type=int, default=3, show_default=True, help="Lines of context.")
@click.pass_obj
def diff_command(obj: common.Context, ref_a: str, ref_b: str, context: int) -> int:
    """Unified diff of two versions (system, user, few-shot, include flags)."""
    with _existing_store(obj) as store:
        reg = PromptRegistry(store)
        a, b = reg.get(ref_a), reg.get(ref_b)
        text = reg.diff(ref_a, ref_b, context=context)
    con = common.out_console()
    if not text:
        con.print(f"no differences between {a.ref} and {b.ref}")
        return 0
    styles = {"+": "green", "-": "red", "@": "cyan"}
    for line in text.splitlines():
        style = "bold" if line.startswith(("+++", "---")) else styles.get(line[:1])
        con.print(line, style=style, markup=False, highlight=False, soft_wrap=True)
    return 0


@prompts_group.command("history")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def history_command(obj: common.Context, name: str, as_json: bool) -> int:
    """Commits and label moves of NAME, oldest first."""
    with _existing_store(obj) as store:
        events = PromptRegistry(store).history(name)
    if as_json:
        common.print_json([e.model_dump(mode="json", exclude_none=True) for e in events])
        return 0
    t = Table(show_edge=False, header_style="bold", title=f"history of {name}", title_justify="left")
    for col in ("when", "event", "version", "detail"):
        t.add_column(col)
    for e in events:
        if e.kind == "commit":
            detail = common.escape(e.message or "") + (f" [dim]({common.escape(e.author)})[/]" if e.author else "")
            t.add_row(e.at[:19].replace("T", " "), "commit", f"v{e.version}", detail)
        else:
            before = f"v{e.previous}" if e.previous is not None else "(new)"
            t.add_row(e.at[:19].replace("T", " "), "label", f"v{e.version}", f"{e.label}: {before} → v{e.version}")
    common.out_console().print(t)
    return 0


def _parse_vars(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise UserError(f"expected NAME=VALUE, got {p!r}", field="--var")
        out[key.strip()] = value
    return out


@prompts_group.command("compile")
@click.argument("ref")
@click.option("--var", "pairs", multiple=True, help="Variable NAME=VALUE (repeatable).")
@click.option("--row-file", type=click.Path(dir_okay=False), default=None, help="Dataset to take a row from.")
@click.option("--row", "row_id", default=None, help="Row id in --row-file (rendered exactly as a run would).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def compile_command(obj: common.Context, ref: str, pairs: tuple[str, ...], row_file: str | None, row_id: str | None,
                    as_json: bool) -> int:
    """Render REF strictly with --var values (or a dataset row); a missing variable is an error."""
    variables = _parse_vars(pairs)
    example = None
    if (row_file is None) != (row_id is None):
        raise UserError("give --row-file and --row together", field="--row")
    if row_file is not None:
        from tunegate.core.loading import load_dataset

        ds = load_dataset(row_file)
        example = next((ex for ex in ds if ex.id == row_id), None)
        if example is None:
            ids = [ex.id for ex in ds]
            raise UserError(f"no row {row_id!r}; ids: {', '.join(ids[:8])}{' ...' if len(ids) > 8 else ''}",
                            file=row_file, field="--row")
    with _existing_store(obj) as store:
        compiled = PromptRegistry(store).compile(ref, variables, example=example)
    if as_json:
        common.print_json(compiled.model_dump(mode="json", exclude_none=True))
        return 0
    con = common.out_console()
    con.print(f"[bold]{compiled.ref}[/]" + (f" · row {common.escape(compiled.row)}" if compiled.row else ""))
    for m in compiled.messages:
        con.print(f"\n[bold cyan]── {m.role} ──[/]")
        con.print(m.content or "", markup=False, highlight=False, soft_wrap=True)
    if example is not None and example.tools:
        con.print(f"\n[dim]+ {len(example.tools)} tool spec(s) sent with this row (not part of the messages)[/]")
    if compiled.unused:
        con.print(f"\n[yellow]unused variables:[/] {common.escape(', '.join(compiled.unused))}")
    return 0


def register(cli: click.Group) -> None:
    cli.add_command(prompts_group)
