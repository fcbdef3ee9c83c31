"""Weight tuning end to end on the real SmolLM2-135M (a few steps, max_length 128, 3-5 rows).

What must hold: the saved adapter reloads with PEFT and gives the same logits as the trained
model in memory; training moved the logits; the manifest and the stored lineage carry the
documented keys; the local backend loads the result (attached, merged, soft prompt); an
interrupted run resumes to the same final step and the same weights as an uninterrupted one.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tunegate.backends.local import LocalBackend
from tunegate.cli.main import main
from tunegate.core.candidate import load_candidate
from tunegate.core.example import Message
from tunegate.core.request import GenerationRequest
from tunegate.errors import UserError
from tunegate.store.sqlite import Store
from tunegate.tuning.weights.config import TuneConfig
from tunegate.tuning.weights.manifest import LINEAGE_KEYS
from tunegate.tuning.weights.progress import stop_after
from tunegate.tuning.weights.run import tune_weights

from .weights_fixtures import HELD_OUT, write_inputs

slow = [pytest.mark.slow, pytest.mark.xdist_group("smollm2")]
TINY = {"max_steps": 2, "batch_size": 2, "max_length": 128, "threads": 1, "seed": 0}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _logits(model: Any, tok: Any, text: str = "<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n") -> Any:
    import torch

    ids = tok(text, return_tensors="pt", add_special_tokens=False)
    model.eval()
    with torch.no_grad():
        return model(**ids).logits


def _base(path: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)


def _reload_same_logits(res: Any) -> None:
    """Saved adapter + fresh base == in-memory trained model; and != the untouched base."""
    import torch
    from peft import PeftModel

    base_path = Path(res.manifest["base_model"]["path"])
    tok = res.outcome.tokenizer
    trained = _logits(res.outcome.model, tok)
    reloaded = _logits(PeftModel.from_pretrained(_base(base_path), res.outcome.adapter_dir), tok)
    assert torch.allclose(trained, reloaded, atol=1e-5), (trained - reloaded).abs().max()
    base = _logits(_base(base_path), tok)
    # a soft prompt's logits include its virtual tokens first: compare the real positions
    assert not torch.allclose(trained[:, -base.shape[1]:], base, atol=1e-4)  # training changed something


def _check_lineage(res: Any, method: str) -> None:
    m = res.manifest
    assert set(LINEAGE_KEYS) <= set(m) and m["method"] == method
    assert res.candidate.lineage == json.loads(json.dumps(m))  # lineage *is* the manifest
    assert m["adapter_digest"] == load_candidate(res.candidate_path).adapter_digest() or m.get("merged_digest")
    assert m["tuning_data"]["split"] == "train" and m["tuning_data"]["rows"] == len(res.rows.rows)
    assert not set(res.rows.ids) & HELD_OUT
    assert m["base_model"]["digest"].startswith("sha256:") and m["config_hash"].startswith("tcfg-")
    assert m["parent"].startswith("cand-") and set(m["libraries"]) >= {"torch", "transformers", "peft", "trl"}
    met = m["metrics"]
    assert met["steps"] == TINY["max_steps"] and met["tokens"] > 0 and met["tokens_per_s"] > 0
    assert met["peak_rss_mb"] > 100 and m["wall_s"] > 0
    on_disk = json.loads((res.candidate_path.parent / "tunegate-manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(m))


def _generate_one(spec_path: Path) -> str:
    spec = load_candidate(spec_path)
    backend = LocalBackend(spec.model, adapter=spec.adapter, threads=1)
    req = GenerationRequest((Message(role="user", content="Say hello."),), spec.params.model_copy(update={"max_tokens": 3}))
    out = asyncio.run(backend.generate([req]))[0]
    asyncio.run(backend.aclose())
    assert not isinstance(out, Exception), out
    return out.text


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_soft_prompt_end_to_end(tmp_path: Path) -> None:
    p = write_inputs(tmp_path)
    cfg = TuneConfig(method="soft_prompt", num_virtual_tokens=4, lr=0.3, **TINY)
    res = tune_weights("soft_prompt", dataset=p["dataset"], candidate=p["seed"], out=tmp_path / "out",
                       config=cfg, progress=False)
    assert json.loads((res.outcome.adapter_dir / "adapter_config.json").read_text())["peft_type"] == "PROMPT_TUNING"
    _reload_same_logits(res)
    _check_lineage(res, "soft_prompt")
    spec = load_candidate(res.candidate_path)
    assert LocalBackend(spec.model, adapter=spec.adapter).max_batch == 1  # batch-invariance for soft prompts
    assert isinstance(_generate_one(res.candidate_path), str)


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_dpo_end_to_end_with_margin_offset(tmp_path: Path) -> None:
    p = write_inputs(tmp_path)
    cfg = TuneConfig(method="dpo", lr=1e-3, margin_scale=0.5, **TINY)
    res = tune_weights("dpo", dataset=p["dataset"], candidate=p["seed"], out=tmp_path / "out", config=cfg,
                       preferences=p["prefs"], progress=False)
    _reload_same_logits(res)
    _check_lineage(res, "dpo")
    data = res.manifest["tuning_data"]
    assert data["rows"] == 3 and data["preferences"]["pairs"] == 6
    assert data["skipped"] == {"chosen equals rejected": 1, "prompt of a dev/test row": 1, "row in the dev split": 1}


def test_margin_offset_collator_shifts_reference_chosen_logps() -> None:
    import torch

    from tunegate.tuning.weights.dpo import MarginOffsetCollator

    def base(examples: list[dict[str, Any]]) -> dict[str, Any]:
        return {"ref_chosen_logps": torch.tensor([e["ref_chosen_logps"] for e in examples]),
                "ref_rejected_logps": torch.tensor([e["ref_rejected_logps"] for e in examples])}

    col = MarginOffsetCollator(base, scale=0.5 / 0.1)  # alpha / beta
    out = col([{"ref_chosen_logps": -3.0, "ref_rejected_logps": -4.0, "margin": 2.0},
               {"ref_chosen_logps": -1.0, "ref_rejected_logps": -1.0, "margin": 0.0}])
    # beta * delta drops by alpha * margin: beta * (0 - 10) = -1.0 = -(0.5 * 2)
    assert torch.allclose(out["ref_chosen_logps"], torch.tensor([7.0, -1.0]))
    assert torch.equal(out["ref_rejected_logps"], torch.tensor([-4.0, -1.0]))


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_lora_via_cli_merged_and_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from peft import PeftModel

    db = tmp_path / "t.db"
    monkeypatch.setenv("TUNEGATE_DB", str(db))
    p = write_inputs(tmp_path, "method: lora\nmax_steps: 2\nbatch_size: 2\nmax_length: 128\nthreads: 1\n"
                               "lr: 0.005\nmerge: true\n")
    out = tmp_path / "out"
    assert main(["tune", "lora", "--dataset", str(p["dataset"]), "--candidate", str(p["seed"]),
                 "--config", str(p["config"]), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    spec = load_candidate(out / "candidate.yaml")
    assert spec.model == str((out / "merged").resolve()) and spec.adapter is None
    with Store(db) as store:
        stored = store.candidate(result["candidate_hash"])
    assert stored is not None and stored["kind"] == "spec"
    assert set(LINEAGE_KEYS) <= set(stored["lineage"]) and stored["lineage"]["method"] == "lora"
    # merged weights == base + attached adapter
    base_path = Path(stored["lineage"]["base_model"]["path"])
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_path)
    attached = _logits(PeftModel.from_pretrained(_base(base_path), out / "adapter"), tok)
    merged = _logits(_base(out / "merged"), tok)
    assert torch.allclose(attached, merged, atol=1e-4)
    assert not torch.allclose(attached, _logits(_base(base_path), tok), atol=1e-4)
    assert isinstance(_generate_one(out / "candidate.yaml"), str)

    assert main(["candidates", "list", "--json"]) == 0
    listing = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(c["name"], c["method"], c["data_hash"], c["split"]) for c in listing] == \
        [("seed-lora", "lora", stored["lineage"]["tuning_data"]["hash"], "train")]
    assert main(["candidates", "show", result["candidate_hash"][5:17]]) == 0
    shown = capsys.readouterr().out
    assert "method      lora" in shown and stored["lineage"]["tuning_data"]["hash"] in shown
    assert main(["candidates", "show", "cand-ffffffffffff"]) == 2


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_resume_after_crash_reaches_the_same_step_and_weights(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    p = write_inputs(tmp_path)
    cfg = TuneConfig(method="lora", lr=5e-3, save_steps=1, **TINY)
    kw: dict[str, Any] = {"dataset": p["dataset"], "candidate": p["seed"], "config": cfg, "progress": False}
    straight = tune_weights("lora", out=tmp_path / "a", **kw)

    out = tmp_path / "b"
    with pytest.raises(RuntimeError, match="simulated crash after step 2"):  # before step 2 is checkpointed
        tune_weights("lora", out=out, callbacks=[stop_after(2, crash=True)], **kw)
    assert (out / "checkpoints" / "checkpoint-1").is_dir() and not (out / "checkpoints" / "checkpoint-2").exists()
    assert not (out / "tunegate-manifest.json").exists()
    with pytest.raises(UserError, match="pass --resume"):
        tune_weights("lora", out=out, **kw)
    with pytest.raises(UserError, match="config_hash differ"):
        tune_weights("lora", out=out, resume=True, **{**kw, "config": cfg.model_copy(update={"rank": 4})})
    resumed = tune_weights("lora", out=out, resume=True, **kw)
    assert resumed.manifest["resumed_from_step"] == 1
    assert resumed.manifest["metrics"]["steps"] == straight.manifest["metrics"]["steps"] == 2
    a = load_file(straight.outcome.adapter_dir / "adapter_model.safetensors")
    b = load_file(resumed.outcome.adapter_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    import torch

    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(UserError, match="finished tuning run"):
        tune_weights("lora", out=out, resume=True, **kw)
