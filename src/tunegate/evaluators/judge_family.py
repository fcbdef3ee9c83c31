"""Is the judge the candidate's own model, or its sibling? (self-preference bias check)

LLM judges rate their own generations — and those of closely related models — higher than
humans do: Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena"
(self-enhancement bias, arXiv:2306.05685); Panickssery, Bowman & Feng 2024, "LLM Evaluators
Recognize and Favor Their Own Generations" (NeurIPS 2024, arXiv:2404.13076); Wataoka et al. 2024,
"Self-Preference Bias in LLM-as-a-Judge" (arXiv:2410.21819). A gate that compares a fine-tuned
Qwen against its base with a Qwen judge is therefore tilted, and the report must say so.

Names are compared after normalisation: org prefixes and file paths, Ollama tags, file
extensions, sizes (``135m``, ``7b``, ``8x7b``), quantisation tags, dates and suffixes such as
``-instruct``/``-chat`` are dropped; families are matched by name patterns. Content digests
(``sha256:...``) can only be compared for equality.
"""

from __future__ import annotations

import re

__all__ = ["FAMILIES", "model_family", "normalise_model_name", "same_family"]

#: (family, pattern on the normalised name); first match wins, so specific names come first.
FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((f, re.compile(p)) for f, p in (
    ("smollm", r"smollm"),
    ("gpt-oss", r"gpt-?oss"),
    ("gpt-4", r"gpt-?4|chatgpt-?4"),
    ("gpt-3.5", r"gpt-?3\.?5"),
    ("gpt-5", r"gpt-?5"),
    ("openai-o", r"^o[1-9](?:-|$)"),
    ("claude", r"claude"),
    ("gemini", r"gemini"),
    ("gemma", r"gemma"),
    ("nemotron", r"nemotron"),
    ("llama", r"llama"),
    ("qwen", r"qwen|qwq"),
    ("mistral", r"mistral|mixtral|ministral|codestral|magistral|devstral|pixtral"),
    ("phi", r"^phi(?:-|\d|$)"),
    ("deepseek", r"deepseek"),
    ("command", r"^command|^c4ai|aya"),
    ("granite", r"granite"),
    ("olmo", r"olmo"),
    ("falcon", r"falcon"),
    ("yi", r"^yi(?:-|$)"),
    ("internlm", r"internlm"),
    ("glm", r"glm"),
    ("grok", r"grok"),
))

_DROP = {"instruct", "instruction", "chat", "it", "hf", "base", "sft", "dpo", "rlhf", "preview", "latest",
         "gguf", "awq", "gptq", "exl2", "mlx", "fp16", "bf16", "fp32", "fp8", "int4", "int8", "onnx", "turbo"}
_TOKEN_DROP = re.compile(
    r"^(?:\d+(?:\.\d+)?[mbkt]|\d+x\d+(?:\.\d+)?b|a\d+(?:\.\d+)?b|e\d+b"  # sizes: 135m, 7b, 8x7b, a3b, e2b
    r"|i?q\d(?:_\w+)?|k_[sml]|v\d+(?:\.\d+)*|\d{6,8}|\d{4})$"  # quant tags, versions, dates
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_QUANT_SUFFIX = re.compile(r"(?:[-_.](?:i?q\d+(?:_[a-z0-9]+)*|f16|f32))+$")


def normalise_model_name(name: str) -> str:
    """``meta-llama/Llama-3.1-8B-Instruct`` → ``llama-3.1``; ``qwen2.5:7b-instruct-q4_K_M`` → ``qwen2.5``."""
    text = name.strip().lower()
    if text.startswith("sha256:"):
        return text
    text = text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    text = re.sub(r"\.(gguf|safetensors|bin|onnx)$", "", text)
    text = text.split(":", 1)[0]  # Ollama tag (size / quantisation)
    text = _QUANT_SUFFIX.sub("", text)
    text = _DATE.sub("", text)
    tokens = [t for t in re.split(r"[-_\s]+", text) if t]
    kept = [t for t in tokens if t not in _DROP and not _TOKEN_DROP.match(t)]
    return "-".join(kept) or text


def model_family(name: str) -> str | None:
    """The family of a model name (``smollm``, ``llama``, ``qwen``, ``gpt-4``...), or None."""
    norm = normalise_model_name(name)
    for family, rx in FAMILIES:
        if rx.search(norm):
            return family
    return None


def same_family(judge_model: str | None, candidate_model: str | None) -> str | None:
    """Why the two models are related (``same model``, ``same model line 'qwen2.5' ...``,
    ``same family 'qwen'``), or None when unrelated or unknown."""
    if not judge_model or not candidate_model:
        return None
    if judge_model.strip().lower() == candidate_model.strip().lower():
        return "same model"
    a, b = normalise_model_name(judge_model), normalise_model_name(candidate_model)
    if a == b:
        return f"same model line {a!r} (size/suffix aside)"
    fa, fb = model_family(judge_model), model_family(candidate_model)
    if fa is not None and fa == fb:
        return f"same family {fa!r}"
    return None
