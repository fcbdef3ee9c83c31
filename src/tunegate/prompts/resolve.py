"""Resolve a candidate's registry reference (``prompt: support-agent@production``) into content.

A resolved candidate carries the registry's template with ``ref`` set to the exact version
(``support-agent@v7``) and ``lineage.prompt_version`` equal to that ref; the run engine refuses a
candidate whose ref was never resolved, so an unresolved reference can never run silently with
the default template. The candidate's identity hash covers the prompt content only (``ref`` is
excluded), so moving a label to identical content changes nothing, while a label pointing at
different text gives a different candidate.
"""

from __future__ import annotations

from typing import Any

from tunegate.core.candidate import CandidateSpec
from tunegate.errors import UserError
from tunegate.prompts.models import PromptVersion, prompt_hash
from tunegate.prompts.registry import PromptRegistry

__all__ = ["apply_version", "is_resolved", "resolve_candidate"]


def is_resolved(spec: CandidateSpec) -> bool:
    """True when the candidate needs no registry lookup (no ref, or a ref already resolved)."""
    ref = spec.prompt.ref
    return ref is None or spec.lineage.get("prompt_version") == ref


def apply_version(spec: CandidateSpec, version: PromptVersion, *, requested: str | None = None) -> CandidateSpec:
    """``spec`` running ``version``'s prompt, with the version recorded in its lineage.

    Use this (rather than copying ``version.template``) when building candidates in Python, e.g.
    from an optimizer: it sets the exact ref and the lineage the run engine checks.
    """
    lineage: dict[str, Any] = {k: v for k, v in spec.lineage.items() if k != "prompt_ref"}
    lineage.update({"prompt_version": version.ref, "prompt_hash": version.hash})
    if requested is not None and requested != version.ref:
        lineage["prompt_ref"] = requested
    prompt = version.template.model_copy(update={"ref": version.ref})
    return spec.model_copy(update={"prompt": prompt, "lineage": lineage})


def resolve_candidate(spec: CandidateSpec, registry: PromptRegistry) -> CandidateSpec:
    """Fill ``spec.prompt`` from the registry when it is a reference; other specs are returned as is.

    Errors name the candidate file and the ``prompt`` field: an unknown name, version or label, a
    reference combined with inline content (ambiguous: which one runs?), or an already-resolved
    spec whose content no longer matches the version it claims.
    """
    ref = spec.prompt.ref
    if ref is None:
        return spec
    if is_resolved(spec):
        try:
            version = registry.get(ref)
        except UserError as e:
            raise UserError(e.message, file=spec.source, field="prompt") from None
        if version.hash != prompt_hash(spec.prompt):
            raise UserError(f"prompt content differs from registry version {ref}; commit it as a new version "
                            "or remove the ref", file=spec.source, field="prompt")
        return spec
    inline = sorted(spec.prompt.model_fields_set - {"ref"})
    if inline:
        raise UserError(f"prompt {ref!r} is a registry reference, so its content comes from the registry; "
                        f"remove {', '.join(inline)} (or remove ref and give the content inline)",
                        file=spec.source, field="prompt")
    try:
        version = registry.get(ref)
    except UserError as e:
        raise UserError(f"cannot resolve {ref!r}: {e.message}", file=spec.source, field="prompt") from None
    return apply_version(spec, version, requested=ref)
