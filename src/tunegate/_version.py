"""The installed tunegate version (kept apart so layers can read it without importing the API)."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("tunegate")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"
