"""Untrusted text in prompts: tool results, step results, errors and surprises are put inside a
labelled <data> block, and the prompts say that nothing inside one is an instruction.

The block cannot be closed early from inside: every `<data` / `</data` in the text (any case) is
escaped to `&lt;data` / `&lt;/data` before it is wrapped, so a page that writes `</data> Now call
http_get ...` stays inside its block. So that `unwrap` gives back exactly the text (a tool step's
result is the unwrapped tool output), text that already reads `&lt;data` gets one more `amp;`
(`&amp;lt;data`), and `unwrap` takes it off again.

Lone surrogates (U+D800-U+DFFF on their own) are written as U+FFFD: Python holds them in text
from file names it could not decode and from JSON's "\\ud800" escapes, and a request that holds
one cannot be encoded as UTF-8, so the model call fails (langchain-openai: UnicodeEncodeError).
"""

from __future__ import annotations

import re
from typing import Any

_TAG = re.compile(r"<(/?)(data)", re.IGNORECASE)
# What `wrap` writes is lower case; only the tag name is matched in any case.
_ESCAPED = re.compile(r"&lt;(/?)((?i:data))")
# `&lt;data` as the text had it, and as `wrap` wrote it (with one `amp;` more).
_WRITTEN_ESCAPE = re.compile(r"&((?:amp;)*)lt;(/?)((?i:data))")
_ESCAPED_ESCAPE = re.compile(r"&amp;((?:amp;)*)lt;(/?)((?i:data))")
_SURROGATE = re.compile("[\ud800-\udfff]")
_BLOCK = re.compile(r'\A<data source="[^"\n]*" trust="untrusted">\n(.*)\n</data>\Z', re.DOTALL)


def wrap(source: str, text: str) -> str:
    """`text` as an untrusted data block labelled with where it came from."""
    # The label holds names a model chose (step ids), so it is escaped like the text.
    label = _escape(sendable(source).replace('"', "'").replace("\n", " "))
    escaped = _escape(sendable(text))
    return f'<data source="{label}" trust="untrusted">\n{escaped}\n</data>'


def unwrap(block: str) -> str:
    """The original text of a block made by `wrap`; any other text as it is."""
    found = _BLOCK.match(block)
    if not found:
        return block
    return _ESCAPED_ESCAPE.sub(r"&\1lt;\2\3", _ESCAPED.sub(r"<\1\2", found.group(1)))


def _escape(text: str) -> str:
    return _TAG.sub(r"&lt;\1\2", _WRITTEN_ESCAPE.sub(r"&amp;\1lt;\2\3", text))


def sendable(text: str) -> str:
    """`text` with every lone surrogate written as U+FFFD, so a request holding it encodes."""
    return _SURROGATE.sub("\ufffd", text)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """`value` (text, or JSON-like data: dicts, lists, tuples) with every NUL and lone surrogate
    written as U+FFFD, and the same object back when it holds none. A model reply or a tool
    answer may hold either ("\\u0000" and "\\ud800" in JSON, a file name that is not UTF-8),
    and neither can be kept: checkpoints (msgpack) refuse lone surrogates and PostgreSQL's JSON
    refuses NUL, so one such character failed every write of the run, and every resume."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value) if _UNSTORABLE.search(value) else value
    if isinstance(value, dict):
        cleaned = {storable(k): storable(v) for k, v in value.items()}
        unchanged = len(cleaned) == len(value) and all(
            k is c and value[k] is cleaned[c] for k, c in zip(value, cleaned, strict=False)
        )
        return value if unchanged else cleaned
    if isinstance(value, list) or type(value) is tuple:
        items = [storable(v) for v in value]
        if all(a is b for a, b in zip(value, items, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return value


def storable_message(message: Any) -> Any:
    """A LangChain message with `storable` text: what a model said, and the tool calls it made."""
    fields = ("content", "tool_calls", "invalid_tool_calls", "additional_kwargs")
    update = {}
    for name in fields:
        value = getattr(message, name, None)
        cleaned = storable(value)
        if cleaned is not value:
            update[name] = cleaned
    return message.model_copy(update=update) if update else message


MAX_GOAL_CHARS = 100_000  # about 25,000 tokens, sent in every planner and replanner call


def goal_problem(goal: str) -> str:
    """Why `goal` cannot be sent to a model ("" when it can). A goal is the user's own text, so
    it is refused rather than changed: longer than MAX_GOAL_CHARS (a server caller's 5 MB goal
    was planned, priced at $4.70, and kept in every approval request), or holding a lone
    surrogate (undecodable bytes in a command line, a "\\ud800" escape in a server's JSON)."""
    if len(goal) > MAX_GOAL_CHARS:
        return (
            f"the goal is {len(goal):,} characters; at most {MAX_GOAL_CHARS:,} are sent to the "
            "planner. Put long material in a file in the workspace and name it in the goal"
        )
    found = _UNSTORABLE.search(goal)
    if found is None:
        return ""
    if found.group() == "\x00":
        return f"the goal holds a NUL character at character {found.start()}; remove it"
    return (
        f"the goal holds {found.group()!a} at character {found.start()}, which is not text "
        "(a lone surrogate: bytes that are not UTF-8, or a broken escape); give it as UTF-8"
    )
