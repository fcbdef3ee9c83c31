"""Where tunegate keeps its files on this machine (one definition for the model cache and the store)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["tunegate_home"]


def tunegate_home() -> Path:
    """``$TUNEGATE_HOME`` or ``~/.cache/tunegate`` (read on every call: no global state)."""
    env = os.environ.get("TUNEGATE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tunegate"
