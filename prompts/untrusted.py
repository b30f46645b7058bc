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
    found = _SURROGATE.search(goal)
    if found is None:
        return ""
    return (
        f"the goal holds {found.group()!a} at character {found.start()}, which is not text "
        "(a lone surrogate: bytes that are not UTF-8, or a broken escape); give it as UTF-8"
    )
