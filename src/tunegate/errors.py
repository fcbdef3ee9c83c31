"""One exception tree for tunegate.

::

    TunegateError                 root; anything tunegate raises on purpose
    ├── UserError                 bad input, config or usage → CLI exit code 2, one clear line
    │   └── IdentityMismatch      two runs that must not be paired (dataset / evaluator differ)
    ├── BackendError              a model call failed; ``retryable`` says whether to try again
    ├── EvaluatorError            an evaluator could not produce a result (becomes status ``error``)
    └── StoreError                the SQLite store is unusable or inconsistent

A ``UserError`` carries where the problem is (file, line, field) so the message can name it;
the CLI prints ``str(err)`` and never a traceback for it.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "EvaluatorError",
    "IdentityMismatch",
    "StoreError",
    "TunegateError",
    "UserError",
    "field_path",
    "is_retryable",
]


def field_path(loc: tuple[object, ...], root: str) -> str:
    """``("guards", 0, "margin")`` → ``guards[0].margin``: the field as the user wrote it in YAML.

    One form for every file tunegate reads (datasets, candidates, policies, gateway and release
    files), so a user learns it once and can paste it into ``yq``; ``root`` when ``loc`` is empty."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or root


class TunegateError(Exception):
    """Root of every error tunegate raises on purpose."""

    exit_code: int = 1


class UserError(TunegateError):
    """Bad input, configuration or usage. Exit code 2; the message names file, line and field."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        if self.field:
            where += f"{self.field}: "
        return f"{where}{self.message}"

    def located(self, *, file: str | None = None, line: int | None = None) -> UserError:
        """Return a copy with file/line filled in where they were unknown."""
        return type(self)(
            self.message,
            file=self.file if self.file is not None else file,
            line=self.line if self.line is not None else line,
            field=self.field,
        )


class IdentityMismatch(UserError):
    """Two runs cannot be compared: their dataset or evaluator identities differ."""


class BackendError(TunegateError):
    """A model call failed. ``retryable`` is true for 429, 5xx, timeouts and dropped connections."""

    def __init__(self, message: str, *, retryable: bool = False, status_code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code


class EvaluatorError(TunegateError):
    """An evaluator failed on a row; the row's result gets status ``error`` with this message."""


class StoreError(TunegateError):
    """The store is unusable (locked, corrupt, from a newer tunegate)."""


def is_retryable(exc: BaseException) -> bool:
    """True when trying the same call again may succeed (rate limits, server errors, timeouts)."""
    if isinstance(exc, BackendError):
        return exc.retryable
    return isinstance(exc, TimeoutError | ConnectionError)
