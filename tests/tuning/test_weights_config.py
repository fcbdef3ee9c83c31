"""TuneConfig: YAML errors name file:line:field; QLoRA without CUDA is refused with a way out."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tunegate.cli.main import main
from tunegate.errors import UserError
from tunegate.tuning.weights.config import DEFAULT_LR, TuneConfig, load_tune_config
from tunegate.tuning.weights.manifest import LINEAGE_KEYS

from .weights_fixtures import write_inputs


def _cuda_bnb() -> bool:
    import torch

    return bool(torch.cuda.is_available()) and importlib.util.find_spec("bitsandbytes") is not None


@pytest.mark.parametrize(("text", "where"), [
    ("method: lora\nrank: 8\nrnak: 4\n", ":3: rnak: Extra inputs are not permitted"),
    ("method: lora\nrank: many\n", ":2: rank: Input should be a valid integer"),
    ("method: lora\nlr: -1\n", ":2: lr: Input should be greater than 0"),
    ("method: soft_prompt\nmerge: true\n", ":2: merge: a soft prompt has no weights to merge"),
    ("method: lora\nmargin_scale: 0.5\n", ":2: margin_scale: applies to method: dpo only"),
    ("method: lora\ntarget_modules: []\n", ":2: target_modules:"),
    ("method: sgd\n", ":1: method: Input should be"),
    ("- a\n- b\n", ":1: a tuning config must be a mapping"),
    ("method: [unclosed\n", ":2: invalid YAML"),
])
def test_bad_config_names_file_line_field(tmp_path: Path, text: str, where: str) -> None:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    with pytest.raises(UserError) as e:
        load_tune_config(p)
    assert str(e.value).startswith(str(p) + where), str(e.value)


def test_command_and_file_must_agree(tmp_path: Path) -> None:
    p = tmp_path / "cfg.yaml"
    p.write_text("rank: 4\nmethod: dpo\n")
    with pytest.raises(UserError, match=r"cfg.yaml:2: method: this command trains method 'lora'"):
        load_tune_config(p, method="lora")
    p.write_text("rank: 4\n")
    assert load_tune_config(p, method="soft_prompt").method == "soft_prompt"
    p.write_text("")
    assert load_tune_config(p, method="dpo") == TuneConfig(method="dpo")


def test_hash_covers_weights_not_speed() -> None:
    a = TuneConfig(method="lora", threads=1, save_steps=5)
    assert a.hash == TuneConfig(method="lora", threads=2, save_steps=50).hash
    assert a.hash != TuneConfig(method="lora", rank=16).hash
    assert a.hash == TuneConfig(method="lora", lr=DEFAULT_LR["lora"]).hash  # resolved lr is what counts
    assert TuneConfig(method="soft_prompt").learning_rate == DEFAULT_LR["soft_prompt"]
    assert set(LINEAGE_KEYS) == {"base_model", "method", "tuning_data", "config_hash", "parent", "adapter_digest"}


@pytest.mark.skipif(_cuda_bnb(), reason="this machine can run QLoRA")
def test_qlora_without_cuda_is_a_clear_user_error(tmp_path: Path) -> None:
    p = tmp_path / "q.yaml"
    p.write_text("rank: 4\nmethod: qlora\n")
    with pytest.raises(UserError) as e:
        load_tune_config(p, method="lora")
    msg = str(e.value)
    assert msg.startswith(f"{p}:2: method: method qlora needs bitsandbytes and a CUDA GPU")
    assert "use `method: lora`" in msg


def test_cli_bad_inputs_exit_2_before_any_model_or_store(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "t.db"
    monkeypatch.setenv("TUNEGATE_DB", str(db))
    paths = write_inputs(tmp_path, "method: lora\nbatch_size: 0\n")
    base = ["tune", "lora", "--dataset", str(paths["dataset"]), "--candidate", str(paths["seed"]),
            "--out", str(tmp_path / "out")]
    assert main([*base, "--config", str(paths["config"])]) == 2
    assert f"{paths['config']}:2: batch_size: Input should be greater than or equal to 1" in capsys.readouterr().err
    if not _cuda_bnb():
        paths["config"].write_text("method: qlora\n")
        assert main([*base, "--config", str(paths["config"])]) == 2
        assert "use `method: lora`" in capsys.readouterr().err
    paths["seed"].write_text("name: s\nbackend: openai\nbase_url: http://127.0.0.1:9/v1\nmodel: m\n")
    assert main(base) == 2
    assert "backend: weight tuning trains a local model" in capsys.readouterr().err
    assert not db.exists() and not (tmp_path / "out").exists()
