"""Read golden datasets from JSONL, CSV or YAML, validating every row.

Any problem becomes a :class:`~tunegate.errors.UserError` that names the file, the line and the
field, e.g. ``data.jsonl:17: expected_tool_calls[0].name: Field required``. Nothing is half-loaded:
the whole file is validated before a :class:`Dataset` is returned.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tunegate.core.dataset import DEFAULT_SPLIT_RATIOS, Dataset, SplitRatios
from tunegate.core.example import Example
from tunegate.errors import UserError, field_path

__all__ = ["JSON_COLUMNS", "JSON_WHEN_BRACKETED", "config_error", "dotted_field", "load_dataset", "model_walker",
           "parse_row", "pydantic_message", "read_text", "read_yaml", "yaml_line"]

#: CSV columns whose cells hold JSON (a CSV cell can only hold text).
JSON_COLUMNS = ("messages", "schema", "tools", "expected_tool_calls", "metadata")


def read_text(path: Path) -> str:
    """Read a UTF-8 file; a bad byte is reported with its line number."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise UserError("is a directory, expected a file", file=str(path)) from None
    except OSError as e:
        raise UserError(f"cannot read: {e.strerror}", file=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})",
                        file=str(path), line=line) from None
    return text.removeprefix("\ufeff")


_UNION_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "tuple"})


def _clean_loc(loc: tuple[Any, ...]) -> str:
    """Field path as written in the file, without pydantic's union-member tags
    (``("schema", "dict[str,any]")`` → ``schema``; ``("guards", 0, "margin")`` → ``guards[0].margin``)."""
    parts = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in _UNION_TAGS)))
    return dotted_field(parts, "row")


def pydantic_message(err: ValidationError) -> tuple[str, str]:
    """(field path, one-sentence message) for the first problem of a validation error."""
    errors = err.errors()
    loc = _clean_loc(errors[0]["loc"])
    same = [e for e in errors if _clean_loc(e["loc"]) == loc]
    msgs = [e["msg"].removeprefix("Value error, ") for e in same]
    if len(same) > 1 and all(m.startswith("Input should be ") for m in msgs):
        msg = "Input should be " + " or ".join(dict.fromkeys(m.removeprefix("Input should be ") for m in msgs))
    else:
        msg = msgs[0]
    extra = len(errors) - len(same)
    if extra:
        msg += f" (and {extra} more error{'s' if extra > 1 else ''} in this row)"
    return loc, msg


#: The one field-path formatter (kept under this name for the loaders that import it from here).
dotted_field = field_path


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (``X | None``, ``list[X]``, ``dict[str, X]``...)."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def model_walker(root: type[BaseModel]) -> Callable[[tuple[Any, ...]], type[BaseModel] | None]:
    """``model_at`` for :func:`config_error`, read off the model's own field annotations.

    Why: a hand-kept map from top-level key to model goes stale the day a section is added; walking
    the annotations (list indexes and dict keys are containers, not fields) cannot.
    """
    def at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
        model: type[BaseModel] | None = root
        for part in loc:
            if model is None:
                return None
            field = model.model_fields.get(str(part)) if isinstance(part, str) else None
            if field is None:
                continue   # a list index or a dict key: stay on the container's item model
            found = _models_in(field.annotation)
            model = found[0] if found else None
        return model

    return at


def config_error(e: ValidationError, *, text: str, file: str, root: str,
                 model_at: Callable[[tuple[Any, ...]], type[BaseModel] | None],
                 refine: Callable[[dict[str, Any], tuple[Any, ...], str], tuple[tuple[Any, ...], str]] | None = None,
                 ) -> UserError:
    """One ``file:line: field: message`` error for a settings file (policy, release policy...).

    Why shared: every YAML settings file should report the same way -- a typo'd key first (it
    explains the "field required" that usually comes with it), listing the keys that are allowed
    there; then the count of further problems. ``refine(err, loc, msg)`` lets a loader point at a
    better field (a model-level check about one field, a list item written as a bare number).
    """
    errors = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")
    err: dict[str, Any] = dict(errors[0])
    loc: tuple[Any, ...] = tuple(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if refine is not None:
        loc, msg = refine(err, loc, msg)
    if err["type"] == "extra_forbidden":
        parent = model_at(loc[:-1])
        allowed = ", ".join(k for k in parent.model_fields if k != "source") if parent else ""
        msg = f"unknown key {loc[-1]!r}" + (f" (allowed: {allowed})" if allowed else "")
    extra = len(errors) - 1
    if extra:
        msg += f" (and {extra} more error{'s' if extra > 1 else ''})"
    return UserError(msg, file=file, line=yaml_line(text, loc), field=dotted_field(loc, root))


def parse_row(data: Any, *, file: str, line: int) -> Example:
    """Validate one row; errors name file, line and field."""
    if not isinstance(data, dict):
        raise UserError(f"a row must be an object, got {type(data).__name__}", file=file, line=line)
    if "id" not in data:
        raise UserError("missing required field", file=file, line=line, field="id")
    try:
        return Example.model_validate(data)
    except ValidationError as e:
        loc, msg = pydantic_message(e)
        raise UserError(msg, file=file, line=line, field=loc) from None


def read_yaml(path: str | Path) -> tuple[str, Any]:
    """(text, parsed value) of a YAML file; bad UTF-8 or YAML becomes a UserError with file:line."""
    file = str(path)
    text = read_text(Path(path))
    try:
        return text, yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise UserError(f"invalid YAML: {getattr(e, 'problem', None) or e}", file=file,
                        line=mark.line + 1 if mark is not None else None) from None


def yaml_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the deepest YAML node on the path ``loc`` (keys and list indices)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            hit = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if hit is None:
                break
            line, node = hit[0].start_mark.line + 1, hit[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _rows_jsonl(text: str, file: str) -> list[tuple[int, Any]]:
    from tunegate.core.jsonl import read_jsonl  # the one JSONL reader

    return read_jsonl(text, file)


def _rows_json(text: str, file: str) -> list[tuple[int, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"invalid JSON: {e.msg} (column {e.colno})", file=file, line=e.lineno) from None
    if isinstance(data, dict) and "rows" in data:
        data = data["rows"]
    if not isinstance(data, list):
        raise UserError("a .json dataset must be a list of rows (or {rows: [...]})", file=file, line=1)
    return [(1, r) for r in data]


def _rows_yaml(text: str, file: str) -> list[tuple[int, Any]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        raise UserError(f"invalid YAML: {problem}", file=file, line=line) from None
    if isinstance(data, dict) and "rows" in data:
        data = data["rows"]
        assert isinstance(node, yaml.MappingNode)
        node = next(v for k, v in node.value if k.value == "rows")
    if not isinstance(data, list) or not isinstance(node, yaml.SequenceNode):
        raise UserError("a YAML dataset must be a list of rows (or {rows: [...]})", file=file, line=1)
    return [(item.start_mark.line + 1, row) for item, row in zip(node.value, data, strict=True)]


def _rows_csv(text: str, file: str) -> list[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise UserError("CSV file has no header row", file=file, line=1)
    fields = [f.strip() for f in reader.fieldnames]
    if len(set(fields)) != len(fields):
        raise UserError("CSV header repeats a column name", file=file, line=1)
    reader.fieldnames = fields
    rows = []
    start = 2
    for rec in reader:
        line = start
        start = reader.line_num + 1
        if None in rec:
            raise UserError("row has more cells than the header", file=file, line=line)
        row: dict[str, Any] = {}
        for key, cell in rec.items():
            if cell is None or cell == "":
                continue
            if key in JSON_COLUMNS or (key in JSON_WHEN_BRACKETED and cell.lstrip()[:1] in ("[", "{")):
                row[key] = _json_cell(cell, file=file, line=line, field=key)
            elif key.startswith("metadata."):
                row.setdefault("metadata", {})[key.removeprefix("metadata.")] = _metadata_cell(cell)
            else:
                row[key] = cell
        rows.append((line, row))
    return rows


#: CSV columns parsed as JSON when the cell starts with ``[`` or ``{`` (else kept as text), so a
#: JSON-object ``expected`` or a list of references reads exactly as it would from JSONL.
JSON_WHEN_BRACKETED = ("expected", "context", "cohorts")

_JSON_LITERAL = re.compile(r"true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|[\[{].*", re.S)


def _json_cell(cell: str, *, file: str, line: int, field: str) -> Any:
    try:
        return json.loads(cell)
    except json.JSONDecodeError as e:
        hint = ""
        if field in JSON_WHEN_BRACKETED:
            hint = (f" (a {field} cell starting with [ or {{ is read as JSON; for text that starts with a "
                    "bracket, write it as a JSON list of one string, e.g. [\"[sic] ...\"])")
        raise UserError(f"cell is not valid JSON: {e.msg}{hint}", file=file, line=line, field=field) from None


def _metadata_cell(cell: str) -> Any:
    """A ``metadata.NAME`` cell: a JSON literal (true, false, null, a number, an object or a list)
    is parsed, as in JSONL — ``expect_refusal: true`` must be a boolean, not the text "true";
    anything else (including text that only looks numeric, such as ``007``) stays text."""
    text = cell.strip()
    if _JSON_LITERAL.fullmatch(text):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return cell
    return cell


_READERS = {".jsonl": _rows_jsonl, ".ndjson": _rows_jsonl, ".json": _rows_json,
            ".yaml": _rows_yaml, ".yml": _rows_yaml, ".csv": _rows_csv}


def load_dataset(path: str | Path, *, ratios: SplitRatios = DEFAULT_SPLIT_RATIOS, name: str | None = None) -> Dataset:
    """Load and validate a dataset file (``.jsonl``, ``.json``, ``.csv``, ``.yaml``/``.yml``)."""
    p = Path(path)
    file = str(path)
    reader = _READERS.get(p.suffix.lower())
    if reader is None:
        raise UserError(f"unknown dataset format {p.suffix!r}; use .jsonl, .csv or .yaml", file=file)
    text = read_text(p)
    if not text.strip():
        raise UserError("dataset is empty", file=file)
    raw = reader(text, file)
    if not raw:
        raise UserError("dataset has no rows", file=file)
    examples = [parse_row(data, file=file, line=line) for line, data in raw]
    seen: dict[str, int] = {}
    for (line, _), ex in zip(raw, examples, strict=True):
        if ex.id in seen:
            raise UserError(f"duplicate id {ex.id!r} (first on line {seen[ex.id]})", file=file, line=line, field="id")
        seen[ex.id] = line
    lines = {ex.id: line for (line, _), ex in zip(raw, examples, strict=True)}
    return Dataset(name or p.stem, tuple(examples), source=file, ratios=ratios, lines=lines)
