"""A versioned golden dataset: rows, content hash, deterministic splits and cohort filters."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from tunegate.core.example import Example, Split
from tunegate.core.hashing import content_hash
from tunegate.errors import UserError

__all__ = ["DEFAULT_SPLIT_RATIOS", "Dataset", "SplitRatios", "assign_split"]


@dataclass(frozen=True)
class SplitRatios:
    """Fractions of rows in train / dev / test. They must be non-negative and sum to 1."""

    train: float = 0.6
    dev: float = 0.2
    test: float = 0.2

    def __post_init__(self) -> None:
        vals = (self.train, self.dev, self.test)
        if min(vals) < 0 or abs(sum(vals) - 1.0) > 1e-9:
            raise UserError(f"split ratios must be >= 0 and sum to 1, got {vals}", field="split_ratios")

    @classmethod
    def parse(cls, text: str) -> SplitRatios:
        """Parse ``"0.6,0.2,0.2"``."""
        try:
            parts = [float(p) for p in text.split(",")]
        except ValueError:
            raise UserError(f"split ratios must be three numbers like 0.6,0.2,0.2, got {text!r}") from None
        if len(parts) != 3:
            raise UserError(f"split ratios must be three numbers like 0.6,0.2,0.2, got {text!r}")
        return cls(*parts)


DEFAULT_SPLIT_RATIOS = SplitRatios()


def assign_split(row_id: str, ratios: SplitRatios = DEFAULT_SPLIT_RATIOS, salt: str = "") -> Split:
    """Split of a row, from a hash of its id alone.

    Adding, removing or editing other rows never moves a row between splits, so a row that
    gated a candidate yesterday cannot become a tuning row today.
    """
    digest = hashlib.sha256(f"{salt}\0{row_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < ratios.train:
        return "train"
    if u < ratios.train + ratios.dev:
        return "dev"
    return "test"


@dataclass(frozen=True)
class Dataset:
    """An immutable list of rows with unique ids. ``hash`` names its content, not its file."""

    name: str
    examples: tuple[Example, ...]
    source: str | None = None
    ratios: SplitRatios = DEFAULT_SPLIT_RATIOS
    #: Row id → line in the source file (for error messages that name file:line).
    lines: dict[str, int] | None = field(default=None, compare=False, repr=False)
    _by_id: dict[str, Example] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seen: dict[str, int] = {}
        for i, ex in enumerate(self.examples):
            if ex.id in seen:
                raise UserError(
                    f"duplicate id {ex.id!r} (rows {seen[ex.id] + 1} and {i + 1})",
                    file=self.source,
                    field="id",
                )
            seen[ex.id] = i
        object.__setattr__(self, "_by_id", {ex.id: ex for ex in self.examples})

    @classmethod
    def of(cls, examples: Iterable[Example], name: str = "dataset", **kw: object) -> Dataset:
        return cls(name=name, examples=tuple(examples), **kw)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __getitem__(self, row_id: str) -> Example:
        return self._by_id[row_id]

    def __contains__(self, row_id: object) -> bool:
        return row_id in self._by_id

    @property
    def hash(self) -> str:
        """Content hash: canonical rows sorted by id. Stable across key order, row order, format."""
        rows = sorted((ex.model_dump(mode="json", exclude_none=True, by_alias=True) for ex in self.examples),
                      key=lambda r: str(r["id"]))
        for r in rows:  # defaults carry no information; drop them so YAML/CSV/JSONL agree
            if not r.get("cohorts"):
                r.pop("cohorts", None)
            if not r.get("metadata"):
                r.pop("metadata", None)
        return content_hash(rows, prefix="ds-")

    def line_of(self, row_id: str) -> int | None:
        """Line of a row in its source file, when known."""
        return self.lines.get(row_id) if self.lines else None

    def split_of(self, ex: Example) -> Split:
        return ex.split or assign_split(ex.id, self.ratios)

    def split(self, which: Split | Sequence[Split]) -> Dataset:
        """The rows of one or more splits, as a new dataset (its hash differs from the parent)."""
        wanted = {which} if isinstance(which, str) else set(which)
        bad = wanted - {"train", "dev", "test"}
        if bad:
            raise UserError(f"unknown split {sorted(bad)}; use train, dev or test", field="split")
        rows = [ex for ex in self.examples if self.split_of(ex) in wanted]
        label = "+".join(sorted(wanted))
        return Dataset(f"{self.name}[{label}]", tuple(rows), self.source, self.ratios, self.lines)

    def with_cohorts(self, cohorts: Sequence[str]) -> Dataset:
        """Rows tagged with any of ``cohorts``."""
        want = set(cohorts)
        rows = [ex for ex in self.examples if want.intersection(ex.cohorts)]
        return Dataset(f"{self.name}{{{','.join(cohorts)}}}", tuple(rows), self.source, self.ratios, self.lines)

    def head(self, n: int) -> Dataset:
        return Dataset(f"{self.name}[:{n}]", self.examples[:n], self.source, self.ratios, self.lines)

    def cohort_counts(self) -> Counter[str]:
        return Counter(c for ex in self.examples for c in ex.cohorts)

    def split_counts(self) -> Counter[str]:
        return Counter(self.split_of(ex) for ex in self.examples)
