"""A plan with its parameters' values turned into {placeholders}, and back.

The plan cache stores a template's plan with each parameter's value replaced by `{name}` in step
descriptions and tool-step arguments, so a later run fills in its own values. Text replacement
can corrupt a plan when a value is not clearly a value: "port" inside "report", "EU" that may be
the word or the parameter, "Berlin" written "BERLIN" by the model, one value inside another. So
`templatise` refuses (raises Ambiguous) rather than guess, and the caller simply does not cache:
an occurrence must match the value exactly (case too) and stand on word boundaries, values must
be at least MIN_VALUE_CHARS long if they appear at all, no two values' occurrences may overlap,
and a value may appear only in text (not in keys, numbers or booleans). A value that does not
appear leaves the plan as it is: the plan does not depend on it.
"""

from __future__ import annotations

import re
from typing import Any

from app.plan_templates import fill

MIN_VALUE_CHARS = 3


class Ambiguous(ValueError):
    """The plan cannot be templatised safely; the message says which value and where."""


def templatise(value: Any, params: dict[str, str], where: str = "") -> Any:
    """`value` (text, or JSON-like data of a tool step's args) with each parameter's value as
    `{name}`; Ambiguous when that cannot be done without guessing."""
    if isinstance(value, str):
        return _templatise_text(value, params, where)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if _mentions(str(key), params):
                raise Ambiguous(f"{where}: a key ({key!r}) contains a parameter's value")
            out[key] = templatise(item, params, f"{where}.{key}")
        return out
    if isinstance(value, list):
        return [templatise(item, params, f"{where}[{i}]") for i, item in enumerate(value)]
    if value is not None and _mentions(str(value), params):
        raise Ambiguous(f"{where}: {value!r} is not text but contains a parameter's value")
    return value


def instantiate(value: Any, params: dict[str, str]) -> Any:
    """`value` with every `{name}` of `params` filled in (keys and non-text left as they are)."""
    if isinstance(value, str):
        return fill(value, params)
    if isinstance(value, dict):
        return {key: instantiate(item, params) for key, item in value.items()}
    if isinstance(value, list):
        return [instantiate(item, params) for item in value]
    return value


def _mentions(text: str, params: dict[str, str]) -> bool:
    lowered = text.casefold()
    return any(v.casefold() in lowered for v in params.values() if v)


def _templatise_text(text: str, params: dict[str, str], where: str) -> str:
    for name in params:
        if "{" + name + "}" in text:  # it would read as a placeholder when filled in
            raise Ambiguous(f"{where}: the text already contains {{{name}}}")
    spans: list[tuple[int, int, str]] = []
    for name, value in params.items():
        for match in re.finditer(re.escape(value), text, re.IGNORECASE):
            start, end = match.span()
            if len(value) < MIN_VALUE_CHARS:
                raise Ambiguous(
                    f"{where}: parameter {name!r} ({value!r}) is shorter than "
                    f"{MIN_VALUE_CHARS} characters and appears in the plan"
                )
            if match.group() != value:
                raise Ambiguous(
                    f"{where}: parameter {name!r} appears as {match.group()!r}, not {value!r}"
                )
            if not _on_word_boundaries(text, start, end):
                raise Ambiguous(f"{where}: parameter {name!r} ({value!r}) appears inside a word")
            spans.append((start, end, name))
        # IGNORECASE misses variants whose case changes their length: "ß" written "SS".
        if value and text.casefold().count(value.casefold()) > text.count(value):
            raise Ambiguous(f"{where}: parameter {name!r} appears in another case than {value!r}")
    spans.sort()
    for (_, end_a, a), (start_b, _, b) in zip(spans, spans[1:], strict=False):
        if start_b < end_a:
            raise Ambiguous(f"{where}: the values of {a!r} and {b!r} overlap")
    out, at = [], 0
    for start, end, name in spans:
        out += [text[at:start], "{" + name + "}"]
        at = end
    return "".join(out) + text[at:]


def _on_word_boundaries(text: str, start: int, end: int) -> bool:
    """The match does not continue a word on either side (checked only where the value's own
    edge is a word character: a value "(EU)" may touch anything)."""

    def word(ch: str) -> bool:
        return ch.isalnum() or ch == "_"

    left_ok = start == 0 or not (word(text[start]) and word(text[start - 1]))
    right_ok = end == len(text) or not (word(text[end - 1]) and word(text[end]))
    return left_ok and right_ok
