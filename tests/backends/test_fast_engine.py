"""The fast (int8 W8A8) engine on the real SmolLM2: batch invariance down to the logits' bits,
per-row sampling, stop strings, tool parsing, the engine in the identity, LoRA merge and cache.

The behaviours shared with the transformers engine (stop strings, seeded sampling, template,
errors) are also exercised through the default backend in ``test_local.py``; here each test is
about what the fast engine does differently. Small on purpose: a few prompts, <= 16 new tokens.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tunegate.backends import models
from tunegate.backends.base import GenerationRequest
from tunegate.backends.builtin import build_local
from tunegate.backends.local import LocalBackend, engine_label
from tunegate.backends.toolparse import parse_tool_calls
from tunegate.core.candidate import CandidateSpec, DecodingParams
from tunegate.core.example import Message
from tunegate.core.result import ModelOutput
from tunegate.errors import UserError

pytestmark = pytest.mark.xdist_group("local_model")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PROMPTS = ["Hi!", "What is 12 times 7?", "Name a fruit.", "Describe the sea in one sentence.",
           "Who wrote Hamlet?", "List three colours.", "What is the capital of Italy?"]


def req(text: str, tools: tuple[dict[str, Any], ...] | None = None, **params: Any) -> GenerationRequest:
    params.setdefault("max_tokens", 12)
    return GenerationRequest(messages=(Message(role="user", content=text),), params=DecodingParams(**params),
                             tools=tools)


def run(backend: LocalBackend, requests: list[GenerationRequest]) -> list[ModelOutput]:
    outs = asyncio.run(backend.generate(requests))
    for o in outs:
        assert isinstance(o, ModelOutput), o
    return outs  # type: ignore[return-value]


@pytest.fixture(scope="module")
def fast() -> LocalBackend:
    b = LocalBackend(engine="fast", batch_size=8, threads=1)
    b.load()
    return b


# -- no model ------------------------------------------------------------------------------------

def test_engine_is_part_of_the_identity_and_hash() -> None:
    assert engine_label("fast", "auto", None) == "fast-w8a8-v1"
    assert engine_label("transformers", "auto", None) == "transformers-float32"
    assert engine_label("transformers", "bfloat16", None) == "transformers-bfloat16"
    default = CandidateSpec()
    fast = CandidateSpec(options={"engine": "fast"})
    hf = CandidateSpec(options={"engine": "transformers"})
    bf16 = CandidateSpec(options={"engine": "transformers", "dtype": "bfloat16"})
    assert default.identity()["engine"] == "fast-w8a8-v1" and default.hash == fast.hash
    assert len({fast.hash, hf.hash, bf16.hash}) == 3
    assert "engine" not in CandidateSpec(backend="openai", base_url="http://x/v1").identity()
    assert CandidateSpec(options={"engine": "fast", "batch_size": 4}).hash == fast.hash  # throughput only


def test_bad_engine_options_are_user_errors() -> None:
    with pytest.raises(UserError, match="engine"):
        CandidateSpec(options={"engine": "vllm"}, source="cand.yaml").identity()
    with pytest.raises(UserError, match="engine") as e:
        build_local(CandidateSpec(options={"engine": "vllm"}, source="cand.yaml"))
    assert e.value.file == "cand.yaml" and e.value.field == "options.engine"
    with pytest.raises(UserError, match="dtype") as e:
        build_local(CandidateSpec(options={"dtype": "bfloat16"}, source="cand.yaml"))
    assert e.value.field == "options.dtype"
    assert build_local(CandidateSpec(options={"engine": "transformers", "dtype": "bfloat16"})).identity()[
        "engine"] == "transformers-bfloat16"


# -- real model ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_logits_do_not_depend_on_the_batch(fast: LocalBackend) -> None:
    """The strongest form of batch invariance: a row's logits are bit-identical alone and packed
    with other rows (prefill of several prompts at once, then decode steps of several rows)."""
    import torch

    from tunegate.backends.fastlm import FastLlama, RowSpec

    engine: FastLlama = fast._fast
    tok = fast._tokenizer
    prompts = [tok(fast.render_prompt(req(p)), add_special_tokens=False)["input_ids"] for p in PROMPTS[:4]]

    def logits(specs: list[RowSpec]) -> dict[int, list[Any]]:
        seen: dict[int, list[Any]] = {}
        engine.generate(specs, fast._eos, trace=lambda j, x: seen.setdefault(j, []).append(x.clone()))
        return seen

    alone = [logits([RowSpec(p, 3)])[0] for p in prompts]
    together = logits([RowSpec(p, 3) for p in prompts])
    for row, steps in enumerate(alone):
        assert len(steps) == len(together[row]) == 3
        for step, x in enumerate(steps):
            assert torch.equal(together[row][step], x), (step, row)


@pytest.mark.slow
def test_greedy_text_same_at_batch_1_and_8_next_to_a_long_tool_prompt(fast: LocalBackend) -> None:
    reqs = [req(p) for p in PROMPTS] + [req("What is the weather in Oslo? Call the tool.", tools=(WEATHER,))]
    batch = run(fast, reqs)
    for r, b in zip(reqs, batch, strict=True):
        alone = run(fast, [r])[0]
        assert alone.text == b.text and alone.usage == b.usage and alone.finish_reason == b.finish_reason
    assert "Rome" in batch[6].text  # quantized, but still the model
    assert batch[7].tool_calls == parse_tool_calls(batch[7].text, [WEATHER])


@pytest.mark.slow
def test_seeded_sampling_and_stop_strings(fast: LocalBackend) -> None:
    sampled = req("Tell me a story about a dragon.", temperature=1.0, top_p=0.9, seed=11, max_tokens=10)
    alone = run(fast, [sampled])[0]
    mixed = run(fast, [req("Hi!"), sampled, req("Name a colour.", temperature=0.7, seed=2)])
    assert mixed[1].text == alone.text
    other = run(fast, [req("Tell me a story about a dragon.", temperature=1.0, top_p=0.9, seed=s, max_tokens=10)
                       for s in (1, 2)])
    assert len({alone.text, *(o.text for o in other)}) > 1
    counting = req("Count from 1 to 10, one number per line.", max_tokens=16)
    full = run(fast, [counting])[0]
    assert "3" in full.text
    cut = run(fast, [req("Count from 1 to 10, one number per line.", max_tokens=16, stop=["3"])])[0]
    assert cut.text == full.text[:full.text.find("3")] and cut.finish_reason == "stop"
    assert cut.usage.completion_tokens < full.usage.completion_tokens


@pytest.mark.slow
def test_transformers_engine_stays_available() -> None:
    b = LocalBackend(engine="transformers", threads=1)
    out = run(b, [req("What is the capital of France?", max_tokens=8)])[0]
    assert "Paris" in out.text and b.identity()["engine"] == "transformers-float32"
    asyncio.run(b.aclose())


@pytest.mark.slow
def test_lora_adapter_is_merged_and_cached_by_digest(fast: LocalBackend, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(models.resolve_model("smollm2-135m-instruct"))
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    folder = str(models.resolve_model("smollm2-135m-instruct"))
    home = tmp_path / "home"
    monkeypatch.setenv("TUNEGATE_HOME", str(home))  # the engine cache goes here, not in the user's
    prompt = [req("Who wrote Hamlet?", max_tokens=8)]
    a = LocalBackend(model=folder, adapter=str(tmp_path / "adapter"), threads=1)
    merged = run(a, prompt)[0]
    asyncio.run(a.aclose())
    cached = list((home / "engines").glob("fast-*.safetensors"))
    assert len(cached) == 1
    again = LocalBackend(model=folder, adapter=str(tmp_path / "adapter"), threads=1)
    assert run(again, prompt)[0].text == merged.text  # read back from the cache: same weights
    asyncio.run(again.aclose())
    assert merged.text != run(fast, prompt)[0].text  # a strong random LoRA does change the model


def test_concurrent_single_requests_share_batches_and_keep_their_text(fast: LocalBackend) -> None:
    """A gateway calls generate once per user request: calls arriving while a batch runs are coalesced
    into the next batch, and each caller still gets exactly its own rows' text (the engine is
    batch-invariant, so coalescing changes nothing but the wall time)."""
    prompts = ["Name a colour.", "What is 2 + 3?", "Say hello in French.", "Name a fruit.", "Count to three.",
               "What is the capital of Italy?"]
    alone = [run(fast, [req(p, max_tokens=8)])[0].text for p in prompts]

    async def together() -> list[list[Any]]:
        return await asyncio.gather(*(fast.generate([req(p, max_tokens=8)]) for p in prompts))

    before = fast.batches_run
    outs = asyncio.run(together())
    assert [o[0].text for o in outs] == alone
    assert fast.batches_run - before < len(prompts)  # the first call ran alone, the rest shared batches
