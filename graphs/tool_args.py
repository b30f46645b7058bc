"""Arguments of tool steps: references to dependency results, checked at plan time, resolved
just before the call.

A tool step's `args` are the tool's arguments as JSON. Any string in them may hold references,
written `${ID}` or `${ID.PATH}`:

- `${s1}` is the result of step s1 (its text);
- `${s1.rows.0.total}` parses s1's result as JSON and follows the dot-separated path (object keys,
  list indexes from 0);
- a string that is exactly one reference takes the referenced value as it is (a number stays a
  number, a list a list); a reference inside longer text is replaced by the value's text
  (JSON for lists and objects);
- `$${` is a literal `${`.

One syntax, modelled on LLMCompiler's `$1` placeholders and shell/Actions `${...}`, because it is
short for the planner to write (fewer output tokens than `{"$ref": ...}` objects) and works inside
text (a calculator expression, a file's content). A reference may only name a step the tool step
declares in `depends_on`: the scheduler then guarantees the value exists when the tool runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container, Iterable, Iterator, Mapping
from typing import Any

from langchain_core.tools import BaseTool
from pydantic import BaseModel, ValidationError

_REF = re.compile(r"(\$)?\$\{([^{}]*)\}")  # group 1 set: the `$${` escape
MAX_RESOLVED_CHARS = 200_000  # resolved args this large are a mistake, not a tool call


class RefError(ValueError):
    """A reference that cannot be resolved against the dependency results."""


def references(args: Any) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(location in args, reference text) for every `${...}` in `args`, depth first."""
    yield from _walk_refs(args, ())


def _walk_refs(value: Any, loc: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        for match in _REF.finditer(value):
            if not match.group(1):
                yield loc, match.group(2)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_refs(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_refs(item, (*loc, index))


def split_ref(ref: str, ids: Container[str]) -> tuple[str, list[str]] | None:
    """(step id, path) of `ref` given the step ids it may name (a set or mapping: looked up,
    not scanned), or None when it names none. The longest id that fits wins, so ids holding
    dots still work: `ref` itself, then each part of it up to a dot, longest first."""
    end = len(ref)
    while end > 0:
        if ref[:end] in ids:
            return ref[:end], ref[end + 1 :].split(".") if end < len(ref) else []
        end = ref.rfind(".", 0, end)
    return None


def tool_step_problems(
    step_id: str,
    tool_name: str,
    args: dict[str, Any],
    depends_on: Iterable[str],
    tools: Mapping[str, BaseTool],
) -> list[str]:
    """What is wrong with one tool step: a tool the run may not use, arguments that do not fit
    the tool's schema, references to steps it does not depend on. Empty when it is fine."""
    if tool_name not in tools:
        allowed = ", ".join(sorted(tools)) or "none"
        return [
            f"step {step_id!r} uses tool {tool_name!r}, which this run may not use "
            f"(tools: {allowed})"
        ]
    problems: list[str] = []
    deps = list(depends_on)
    known = set(deps)
    ref_locs: list[tuple[Any, ...]] = []
    for loc, ref in references(args):
        ref_locs.append(loc)
        if not ref.strip():
            problems.append(f"step {step_id!r} has an empty reference '${{}}'")
        elif split_ref(ref, known) is None:
            problems.append(
                f"step {step_id!r} refers to '${{{ref}}}', but {ref.split('.')[0]!r} is not in "
                f"its depends_on ({', '.join(deps) or 'none'}); add it there, or write $${{ for "
                "a literal ${"
            )
    problems += _schema_problems(step_id, tools[tool_name], args, ref_locs)
    return problems


def _schema_problems(
    step_id: str, tool: BaseTool, args: dict[str, Any], ref_locs: list[tuple[Any, ...]]
) -> list[str]:
    """Arguments checked against the tool's schema; a value holding a reference is only known
    at run time, so type errors at its location are not held against it."""
    schema = tool.args_schema
    if isinstance(schema, dict):  # a JSON Schema (e.g. an MCP tool): names and required only
        props, required = schema.get("properties", {}), schema.get("required", [])
    elif isinstance(schema, type) and issubclass(schema, BaseModel):
        props = schema.model_json_schema().get("properties", {})
        required = [n for n, f in schema.model_fields.items() if f.is_required()]
    else:
        return []
    where = f"step {step_id!r} (tool {tool.name})"
    problems = [
        f"{where} has unknown argument {name!r}; its arguments: {', '.join(props) or 'none'}"
        for name in args
        if name not in props
    ]
    problems += [
        f"{where} is missing required argument {name!r}" for name in required if name not in args
    ]
    if problems or not isinstance(schema, type):
        return problems
    # An error at a reference's location, inside it or around it: every prefix of each location
    # (a set, so that thousands of errors and references are not compared pairwise).
    refs, around = set(ref_locs), {r[:i] for r in ref_locs for i in range(len(r) + 1)}
    try:
        schema.model_validate(args)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            if loc in around or any(loc[:i] in refs for i in range(len(loc))):
                continue
            at = ".".join(map(str, loc)) or "args"
            problems.append(f"{where} argument {at}: {error['msg']}")
    return problems


def resolve_args(args: dict[str, Any], results: Mapping[str, str]) -> dict[str, Any]:
    """`args` with every reference replaced from `results` (dependency id -> result text).
    RefError when a reference cannot be resolved or the resolved args are too large or too
    deeply nested (a plan's or a result's JSON a few hundred levels deep)."""
    try:
        resolved = _Resolver(results).resolve(args)
        size = len(json.dumps(resolved, default=str))  # JSON escapes can make it longer still
    except RecursionError:
        raise RefError("the arguments are nested too deeply with references filled in") from None
    if size > MAX_RESOLVED_CHARS:
        raise _too_large(size)
    return resolved


def _too_large(size: int) -> RefError:
    return RefError(
        f"the arguments are {size} characters once references are filled in; the limit is "
        f"{MAX_RESOLVED_CHARS}"
    )


class _Resolver:
    """Fills references in, counting the characters they add as it goes: args are planner or
    replanner output (untrusted), and a thousand references to a megabyte-long result must be
    refused before they are joined into a gigabyte, not after."""

    def __init__(self, results: Mapping[str, str]) -> None:
        self.results = results
        self.added = 0
        self._parsed: dict[str, Any] = {}  # step id -> its result as JSON, parsed once

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, str) or "${" not in value:
            return value
        whole = _REF.fullmatch(value)
        if whole and not whole.group(1):
            found = self._value(whole.group(2))
            self._add(found if isinstance(found, str) else json.dumps(found))
            return found

        def fill(match: re.Match[str]) -> str:
            if match.group(1):  # $${...}: literal ${...}
                return match.group(0)[1:]
            found = self._value(match.group(2))
            return self._add(found if isinstance(found, str) else json.dumps(found))

        return _REF.sub(fill, value)

    def _add(self, text: str) -> str:
        self.added += len(text)
        if self.added > MAX_RESOLVED_CHARS:
            raise _too_large(self.added)
        return text

    def _value(self, ref: str) -> Any:
        parts = split_ref(ref, self.results)
        if parts is None:
            raise RefError(f"'${{{ref}}}' names no step this one depends on")
        step_id, path = parts
        if not path:
            return self.results[step_id]
        if step_id not in self._parsed:
            self._parsed[step_id] = _parsed(step_id, ref, self.results[step_id])
        return _at_path(self._parsed[step_id], step_id, ref, path)


def _parsed(step_id: str, ref: str, text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise RefError(f"'${{{ref}}}': {step_id}'s result is JSON nested too deeply") from None
    except ValueError:
        raise RefError(
            f"'${{{ref}}}' follows a path into {step_id}'s result, which is not JSON: "
            f"{text[:120]!r}"
        ) from None


_INDEX = re.compile(r"-?[0-9]{1,18}")  # a list index in a path: ASCII digits ("²" is a digit too)


def _at_path(value: Any, step_id: str, ref: str, path: list[str]) -> Any:
    for i, key in enumerate(path):
        at = ".".join([step_id, *path[: i + 1]])
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif (
            isinstance(value, list)
            and _INDEX.fullmatch(key)
            and -len(value) <= int(key) < len(value)
        ):
            value = value[int(key)]
        else:
            raise RefError(f"'${{{ref}}}': {step_id}'s result has nothing at {at!r}")
    return value
