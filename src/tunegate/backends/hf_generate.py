"""The ``transformers`` engine's batched generation for the local backend: HF ``generate`` on
left-padded rows, with per-row seeded sampling and per-row stop strings.

Why the two helpers: HF's sampler draws from one global RNG, so a row's sample would depend on its
batch neighbours. :class:`SeededSampler` draws each row's token from that row's own
``torch.Generator`` (the same draw as the fast engine, ``fastlm.sample_token``) and hands generate a
one-hot score it follows greedily. :class:`StopOnStrings` ends a row once its decoded tail holds
one of its own stop strings. The fast engine (``fastlm``) does both inside its own loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunegate.backends.base import GenerationRequest

__all__ = ["SeededSampler", "StopOnStrings", "hf_generate"]


class SeededSampler:
    """Logits processor: each sampled row draws from its own generator; greedy rows pass through.

    Returns scores that are ``-inf`` except at the drawn token, so generate's greedy step picks it.
    """

    def __init__(self, requests: Sequence[GenerationRequest]) -> None:
        import torch

        self._rows = [
            (r.params.temperature, r.params.top_p, torch.Generator().manual_seed(r.seed))
            if r.params.temperature > 0 else None
            for r in requests
        ]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        from tunegate.backends.fastlm import sample_token

        out = scores.clone()
        for i, row in enumerate(self._rows):
            if row is None:
                continue
            temperature, top_p, gen = row
            token = sample_token(scores[i], temperature, top_p, gen)
            out[i].fill_(float("-inf"))
            out[i, token] = 0.0
        return out


class StopOnStrings:
    """Stopping criterion: a row is done once its decoded tail contains one of its stop strings."""

    def __init__(self, tokenizer: Any, stops: Sequence[Sequence[str]], prompt_len: int) -> None:
        self._tok, self._stops, self._start = tokenizer, [list(s) for s in stops], prompt_len
        longest = max((len(s) for row in self._stops for s in row), default=1)
        self._tail = 4 * longest + 8  # a character is at most 4 byte-level tokens

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        lo = max(self._start, input_ids.shape[1] - self._tail)
        for i, stops in enumerate(self._stops):
            if stops:
                tail = self._tok.decode(input_ids[i, lo:], skip_special_tokens=True)
                done[i] = any(s in tail for s in stops)
        return done


def hf_generate(model: Any, tok: Any, reqs: Sequence[GenerationRequest], prompts: list[list[int]],
                max_tokens: int, eos: set[int]) -> list[tuple[list[int], bool]]:
    """Per row: (generated ids up to the end token, ended by eos/stop rather than length)."""
    import torch

    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    processors = [SeededSampler(reqs)] if any(r.params.temperature > 0 for r in reqs) else []
    stops = [r.params.stop or [] for r in reqs]
    criteria = [StopOnStrings(tok, stops, width)] if any(stops) else []
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids, attention_mask=mask, max_new_tokens=max_tokens, do_sample=False,
            temperature=None, top_p=None, top_k=None, pad_token_id=tok.pad_token_id,
            eos_token_id=sorted(eos), logits_processor=processors, stopping_criteria=criteria,
        )
    ends = eos | {tok.pad_token_id}
    rows: list[tuple[list[int], bool]] = []
    for row in out[:, width:].tolist():
        n = next((j for j, t in enumerate(row) if t in ends), len(row))
        rows.append((row[:n], n < len(row) or n < max_tokens))
    return rows
