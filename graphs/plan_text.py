"""Plans written one step per line: the planner's compact reply format.

A plan as JSON spends most of its tokens on keys and punctuation (`{"id": "s1", "tool": ...}`:
about 24 tokens for a look-up step, against 9 for the same call made as a tool call). Every
output token is latency, and a step cannot start before it is written, so the planner writes
this instead (LLMCompiler's idea of one line per call, with our step fields):

    1 = lookup("item-1")
    2 = lookup(key="${1.next}")
    3 (after 1, 2; tools: write_file): Write both records to records.md.
    4 (tools: none): Say which record is older.

- `ID = TOOL(ARGS)` is a tool step (graphs/tool_step.py): arguments as in a Python call,
  literal values only, positional ones in the order of the tool's parameters (`params`, the
  order the planner prompt lists them in) or by name. The steps its `${...}` references name
  are its dependencies, so they need not be repeated. `ID = TOOL {JSON args}` is read too.
- `ID: DESCRIPTION` is a step for an executor model.
- An optional `(after IDS; tools: NAMES)` after the id gives further dependencies and the
  step's tool allow-list (`tools: none` for no tools); left out, no further dependencies and
  every tool of the run.

Each line becomes a `PlanStep`, so what follows (validation, scheduling, state) is the same as
for a JSON plan. Lines are parsed strictly: a line that is not a step is a problem sent back to
the model with the others, never guessed at. Blank lines and Markdown code fences are skipped.
"""

from __future__ import annotations

import ast
import json
import keyword
import math
import re
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from graphs.schemas import INT64, PlanStep
from graphs.tool_args import references, split_ref

_ID = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
# Possessive `\s*+`: with plain `\s*` either side of an optional group, a line of spaces made the
# match backtrack quadratically (20,000 characters: seconds per line, on the event loop).
_LINE = re.compile(
    rf"^(?P<id>{_ID})\s*+(?:\((?P<head>[^()]*)\)\s*+)?"
    r"(?:=\s*+(?P<tool>[A-Za-z0-9_.-]+)\s*+(?:(?P<args>\{.*\})|\((?P<call>.*)\))?"
    r"|:\s*+(?P<description>.*\S))\s*$"
)
_HEAD_PART = re.compile(r"^\s*(?P<key>after|tools)\b\s*:?\s*(?P<names>.*)$")
_FENCE = re.compile(r"^\s*```")
MAX_LINE_CHARS = 20_000  # a longer line is a runaway reply, not a step
_NAMED_CONSTANTS = {
    "true": True,
    "false": False,
    "null": None,
    "True": True,
    "False": False,
    "None": None,
}  # JSON's spellings and Python's: models write both
Params = Mapping[str, Sequence[str]]
"""Each tool's parameter names in order: what a positional argument binds to."""


class PlanTextError(ValueError):
    """Lines that are not steps; `problems` says which and why, for the model's retry."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_plan_text(
    text: str, completed: Sequence[str] = (), params: Params | None = None
) -> list[PlanStep]:
    """The steps of a plan written as lines; PlanTextError listing every bad line. `completed`
    are ids of steps already done (a revision's steps may refer to them); `params` each tool's
    parameter names, for positional arguments."""
    steps: list[PlanStep] = []
    earlier = set(completed)  # grown line by line: a copy per line made long plans quadratic
    problems: list[str] = []
    # "\n" only, as LineStream splits: str.splitlines also breaks at U+2028 and friends, so a
    # step streamed (and started) from one line could be refused as two when the reply ends.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or _FENCE.match(line):
            continue
        try:
            steps.append(parse_step_line(line, earlier, params))
            earlier.add(steps[-1].id)
        except PlanTextError as exc:
            problems += [f"line {number}: {p}" for p in exc.problems]
    if problems:
        raise PlanTextError(problems)
    return steps


def parse_step_line(line: str, earlier: Collection[str], params: Params | None = None) -> PlanStep:
    """One line as a step; `earlier` are the ids of the lines before it (what a reference may
    name), `params` each tool's parameter names. PlanTextError when the line is not a step."""
    shown = line if len(line) <= 120 else line[:117] + "..."
    if len(line) > MAX_LINE_CHARS:
        raise PlanTextError([f"the line is {len(line)} characters; a step line is shorter"])
    match = _LINE.match(line.strip())
    if match is None:
        raise PlanTextError(
            [
                f"{shown!r} is not a step; write 'ID = TOOL(ARGS)' or 'ID: what to do', "
                "optionally with '(after IDS; tools: NAMES)' after the id"
            ]
        )
    after, tools = _head(match["head"], shown)
    if match["description"] is not None:
        return PlanStep(
            id=match["id"], description=match["description"], depends_on=after, tools=tools
        )
    if match["call"] is not None:
        args = _call_args(match["call"], match["tool"], (params or {}).get(match["tool"]), shown)
    else:
        args = _args(match["args"], shown)
    referenced = _referenced(args, earlier)
    return PlanStep(
        id=match["id"],
        tool=match["tool"],
        args=args,
        depends_on=_unique([*referenced, *after]),
        tools=tools,
    )


def _head(head: str | None, shown: str) -> tuple[list[str], list[str] | None]:
    """(further dependencies, tool allow-list or None) of `(after A, B; tools: x, y)`."""
    after: list[str] = []
    tools: list[str] | None = None
    for part in (head or "").split(";"):
        if not part.strip():
            continue
        found = _HEAD_PART.match(part)
        if found is None:
            raise PlanTextError(
                [
                    f"{shown!r}: {part.strip()!r} in the parentheses is neither 'after IDS' nor "
                    "'tools: NAMES'"
                ]
            )
        names = [n.strip() for n in found["names"].split(",") if n.strip()]
        if found["key"] == "after":
            after += names
        else:
            tools = [] if names == ["none"] else names
    return after, tools


def _args(text: str | None, shown: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        args = json.loads(
            text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_json_int
        )
    except json.JSONDecodeError as exc:
        raise PlanTextError(
            [f"{shown!r}: the arguments are not a JSON object ({exc.msg})"]
        ) from None
    except RecursionError:
        raise PlanTextError([f"{shown!r}: the arguments are nested too deeply"]) from None
    if not isinstance(args, dict):
        raise PlanTextError([f"{shown!r}: the arguments must be a JSON object"])
    return args


def _no_constant(name: str) -> Any:
    # json.loads reads NaN and Infinity, which JSON does not have (PostgreSQL refuses them).
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


def _bounded_int(value: int) -> int:
    """`value` if it is in INT64 (graphs/schemas.py), refused at once with the line's other
    problems (the plan check would refuse it too, after the whole reply)."""
    if value not in INT64:
        raise ValueError(f"{str(value)[:40]}... is too large a number; write it as a string")
    return value


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:  # int() of thousands of digits is slow, then refused anyway
        raise json.JSONDecodeError(f"{text[:40]}... is too large a number", text, 0)
    try:
        return _bounded_int(int(text))
    except ValueError as exc:
        raise json.JSONDecodeError(str(exc), text, 0) from None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 overflows to infinity
        raise json.JSONDecodeError(f"{text[:40]} is not a finite number", text, 0)
    return value


def _call_args(text: str, tool: str, names: Sequence[str] | None, shown: str) -> dict[str, Any]:
    """The arguments of `TOOL(ARGS)`: Python call syntax with literal values only (nothing is
    evaluated: the syntax tree is read), positional ones bound to `names` in order."""
    source = f"_({text})"
    try:
        with warnings.catch_warnings():  # "C:\dir" warns of an invalid escape; it reads as typed
            warnings.simplefilter("ignore")
            call = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        msg = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
        raise PlanTextError(
            [
                f"{shown!r}: the arguments are not a call's ({msg}); write NAME=value, or the "
                "arguments as a JSON object: TOOL {...}"
            ]
        ) from None
    if (
        not isinstance(call, ast.Call)
        or not (isinstance(call.func, ast.Name) and call.func.id == "_")  # not `f(1)(2)`
        or any(isinstance(a, ast.Starred) for a in call.args)
        or any(k.arg is None for k in call.keywords)  # not **spread
    ):
        raise PlanTextError([f"{shown!r}: write the arguments as values or NAME=value"])
    if (call.end_lineno, call.end_col_offset) != (1, len(source.encode())):  # `f(1)  # f(2)`
        raise PlanTextError([f"{shown!r}: nothing may follow the call's closing parenthesis"])
    try:
        positional = [_literal(a) for a in call.args]
        named = [(k.arg, _literal(k.value)) for k in call.keywords]
    except ValueError as exc:
        raise PlanTextError([f"{shown!r}: {exc}"]) from None
    except RecursionError:  # ast.parse allows a few hundred levels of `-` or `[`
        raise PlanTextError([f"{shown!r}: the arguments are nested too deeply"]) from None
    if positional and names is None:
        raise PlanTextError(
            [f"{shown!r}: {tool!r} is not a tool of this run, so its arguments must be named"]
        )
    if len(positional) > len(names or ()):
        raise PlanTextError(
            [f"{shown!r}: {tool} takes {len(names or ())} argument(s): {', '.join(names or ())}"]
        )
    if (
        len(positional) == 1
        and not named
        and isinstance(positional[0], dict)
        and positional[0]
        and set(positional[0]) <= set(names or ())
    ):  # `lookup({"key": "a"})`: the JSON form in parentheses, not an object for `key`
        raise PlanTextError(
            [f"{shown!r}: ambiguous; write {tool}(NAME=value), or {tool} {{...}} for a JSON object"]
        )
    args = dict(zip(names or (), positional, strict=False))
    given = [*args, *(name for name, _ in named)]
    twice = sorted({n for n in given if given.count(n) > 1})
    if twice:
        raise PlanTextError([f"{shown!r}: {', '.join(twice)} given twice"])
    return {**args, **dict(named)}


def _literal(node: ast.expr) -> Any:
    """The value of a literal: string, number, true/false/null (JSON's or Python's spelling),
    list or dict of them. ValueError for anything else (a name, a call, an expression)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bool | None):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMED_CONSTANTS:
        return _NAMED_CONSTANTS[node.id]
    sign, number = 1, node
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign, number = (-1 if isinstance(node.op, ast.USub) else 1), node.operand
    if isinstance(number, ast.Constant) and type(number.value) is float:
        if not math.isfinite(number.value):  # 1e999: JSON has no infinity; plans are stored as JSON
            raise ValueError(f"{ast.unparse(node)[:60]!r} is not a finite number")
        return sign * number.value
    if isinstance(number, ast.Constant) and type(number.value) is int:
        return _bounded_int(sign * number.value)
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        keys = [_literal(k) if k is not None else None for k in node.keys]
        if not all(isinstance(k, str) for k in keys):
            raise ValueError("a dict's keys must be strings")
        return {k: _literal(v) for k, v in zip(keys, node.values, strict=True)}
    raise ValueError(f"{ast.unparse(node)[:60]!r} is not a literal value (quote a string)")


def _referenced(args: dict[str, Any], earlier: Collection[str]) -> list[str]:
    """The earlier steps `args` refer to, read as tool steps read them (tool_args.split_ref); a
    reference to no earlier step is left for the plan check to name (it is not a dependency)."""
    found = (split_ref(ref, earlier) for _, ref in references(args))
    return [hit[0] for hit in found if hit is not None]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


class LineStream:
    """Feed it the reply text so far; it hands back each newly complete step line once, as a
    step dict (`PlanStep` fields). A line is complete when its newline has arrived; the last
    line waits for the end of the reply, parsed with the rest. A line that is not a step stops
    the stream (nothing after it starts early): the whole reply is checked when it ends."""

    def __init__(self, params: Params | None = None) -> None:
        self._params = params
        self._done = 0  # characters of text already read
        self._ids: set[str] = set()
        self._broken = False

    def feed(self, text: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while not self._broken:
            end = text.find("\n", self._done)
            if end < 0:
                return found
            line, self._done = text[self._done : end], end + 1
            if not line.strip() or _FENCE.match(line):
                continue
            try:
                step = parse_step_line(line, self._ids, self._params)
            except Exception:  # not a step (PlanTextError), or a line a check choked on
                self._broken = True
                break
            self._ids.add(step.id)
            found.append(step.model_dump(exclude_none=True))
        return found


def format_plan_text(steps: Iterable[Mapping[str, Any]], params: Params | None = None) -> str:
    """Steps (PlanStep fields as dicts) as plan lines: what a model following the planner
    prompt writes. Dependencies a tool step's references already imply are not repeated;
    arguments are positional as far as `params` gives the tool's order, named after that."""
    lines = []
    earlier: set[str] = set()
    for step in steps:
        args = step.get("args") or {}
        implied = set(_referenced(args, earlier)) if step.get("tool") else set()
        after = [d for d in step.get("depends_on") or [] if d not in implied]
        head = []
        if after:
            head.append("after " + ", ".join(after))
        if step.get("tools") is not None:
            head.append("tools: " + (", ".join(step["tools"]) or "none"))
        prefix = step["id"] + (f" ({'; '.join(head)})" if head else "")
        if step.get("tool"):
            body = _call_text(args, (params or {}).get(step["tool"], ()))
            if body is None:
                body = " " + json.dumps(args, ensure_ascii=False, separators=(",", ":"))
            else:
                body = f"({body})"
            lines.append(f"{prefix} = {step['tool']}{body}")
        else:
            lines.append(f"{prefix}: {' '.join(str(step.get('description', '')).split())}")
        earlier.add(step["id"])
    return "\n".join(lines)


def _call_text(args: Mapping[str, Any], names: Sequence[str]) -> str | None:
    """`args` as a call's arguments: the leading ones in `names`' order positionally; None when
    a name left to write is not a Python identifier (`file-path`, `from`): the JSON form then."""
    parts, rest = [], dict(args)
    for name in names:
        if name not in rest:
            break
        parts.append(_value_text(rest.pop(name)))
    if any(not n.isidentifier() or keyword.iskeyword(n) for n in rest):
        return None
    parts += [f"{name}={_value_text(value)}" for name, value in rest.items()]
    return ", ".join(parts)


def _value_text(value: Any) -> str:
    # JSON is a Python literal too, once true/false/null are read as names (_NAMED_CONSTANTS).
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


MORE_STEPS = "MORE STEPS"  # the end-of-run reply's first line when it gives steps, not an answer


def parse_end_text(
    text: str, completed: Sequence[str], params: Params | None = None
) -> dict[str, Any]:
    """The end-of-run decision written as text (prompts/replanner_end_lines.txt): the final
    answer itself, or a first line MORE STEPS and then step lines. EndDecision fields."""
    body = text.strip()
    first, _, rest = body.partition("\n")
    if _FENCE.match(first):  # "```\nMORE STEPS\n...```": the lines are read past fences
        first, _, rest = rest.strip().partition("\n")
    if first.strip().rstrip(":").upper() != MORE_STEPS:
        return {"action": "finish", "response": body}  # an answer keeps its fences
    steps = parse_plan_text(rest, completed, params)
    return {"action": "replan", "steps": [s.model_dump(exclude_none=True) for s in steps]}


def format_end_text(decision: Mapping[str, Any], params: Params | None = None) -> str:
    """An end-of-run decision (EndDecision fields) as the text a model following the lines
    prompt writes."""
    if decision.get("action") == "finish":
        return str(decision.get("response") or "")
    return f"{MORE_STEPS}\n{format_plan_text(decision.get('steps') or [], params)}"
