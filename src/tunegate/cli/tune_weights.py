"""``tunegate tune lora|dpo|soft-prompt``: train an adapter and register it as a gate-ready candidate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from tunegate.cli import common

__all__ = ["register"]

_EPILOG = """\b
Writes into OUT: adapter/, tunegate-manifest.json (lineage), candidate.yaml, checkpoints/.
Only the dataset's train split is used. Then gate it like any candidate:
  tunegate gate --dataset D --baseline-candidate seed.yaml --candidate OUT/candidate.yaml \\
                --policy policy.yaml --split test
"""


F = TypeVar("F", bound=Callable[..., Any])


def _options(f: F) -> F:
    """The options every weight-tuning command shares."""
    for opt in reversed([
        click.option("--dataset", "dataset", required=True, type=click.Path(dir_okay=False),
                     help="Golden dataset; only its train split is used."),
        click.option("--candidate", "candidate", required=True, type=click.Path(dir_okay=False),
                     help="Seed candidate YAML (backend local): base model, prompt and params to tune under."),
        click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
                     help="TuneConfig YAML (rank, alpha, lr, epochs/max_steps, ...); defaults if omitted."),
        click.option("--out", "out", required=True, type=click.Path(file_okay=False),
                     help="Output folder (new, or an unfinished run with --resume)."),
        click.option("--resume", is_flag=True, help="Continue the unfinished run in --out from its last checkpoint."),
        click.option("--json", "as_json", is_flag=True, help="Print the result (paths, hash, manifest) as JSON."),
    ]):
        f = opt(f)
    return f


def _run(obj: common.Context, command: str, *, dataset: str, candidate: str, config: str | None, out: str,
         resume: bool, as_json: bool, preferences: str | None = None) -> int:
    from tunegate.tuning.weights.manifest import register_candidate
    from tunegate.tuning.weights.run import tune_weights

    res = tune_weights(command, dataset=dataset, candidate=candidate, config=config, out=out,  # type: ignore[arg-type]
                       resume=resume, preferences=preferences, progress=not as_json)
    with obj.store() as store:  # opened once the adapter exists: a bad input never touches the store
        register_candidate(store, res.candidate_path)
    if as_json:
        common.print_json(res.to_dict())
        return 0
    m, con = res.manifest, common.out_console()
    met = m["metrics"]
    con.print(f"[bold]{res.candidate.name}[/] {res.candidate.hash}")
    con.print(f"  method {m['method']} · {m['tuning_data']['rows']} train rows "
              f"({sum(m['tuning_data']['skipped'].values())} skipped) · {met['steps']} steps · "
              f"loss {met['first_loss']} → {met['final_loss']} · {met['tokens_per_s']} tok/s · "
              f"peak RSS {met['peak_rss_mb']} MB · {m['wall_s']} s")
    con.print(f"  candidate: {res.candidate_path}")
    return 0


@click.command("lora")
@_options
@click.pass_obj
def lora_command(obj: common.Context, /, **kw: Any) -> int:
    """LoRA SFT on the expected answers / tool calls of the train split (QLoRA with method: qlora)."""
    return _run(obj, "lora", **kw)


@click.command("soft-prompt")
@_options
@click.pass_obj
def soft_prompt_command(obj: common.Context, /, **kw: Any) -> int:
    """Prompt tuning: learn num_virtual_tokens embeddings; the base weights stay untouched."""
    return _run(obj, "soft_prompt", **kw)


@click.command("dpo")
@_options
@click.option("--preferences", required=True, type=click.Path(dir_okay=False),
              help='Preference JSONL: {"id","prompt","chosen","rejected","source","margin"?} per line.')
@click.pass_obj
def dpo_command(obj: common.Context, /, **kw: Any) -> int:
    """DPO on preference pairs with a LoRA adapter (reference = the base model)."""
    return _run(obj, "dpo", **kw)


def register(group: click.Group) -> None:
    for cmd in (lora_command, soft_prompt_command, dpo_command):
        cmd.epilog = _EPILOG
        group.add_command(cmd)
