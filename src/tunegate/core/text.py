"""Text scanning helpers shared by the parsers that dig JSON or Python literals out of model text."""

from __future__ import annotations

__all__ = ["balanced_end"]

_CLOSE = {"{": "}", "[": "]", "(": ")"}


def balanced_end(text: str, start: int, *, quotes: str = "\"'", brackets: str = "{[(") -> int | None:
    """Index just past the bracket closing the one at ``text[start]``, or None when it never closes.

    Strings delimited by any of ``quotes`` are skipped (backslash escapes respected); only the
    opening ``brackets`` given nest, and a closer that does not match the innermost open bracket
    is ignored (model text is often slightly broken; the caller parses what was delimited).
    """
    stack: list[str] = []
    quote = ""
    escaped = False
    for i in range(start, len(text)):
        c = text[i]
        if quote:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == quote:
                quote = ""
        elif c in quotes:
            quote = c
        elif c in brackets:
            stack.append(_CLOSE[c])
        elif stack and c == stack[-1]:
            stack.pop()
            if not stack:
                return i + 1
    return None
