"""Untrusted text in prompts: tool results, step results, errors and surprises are put inside a
labelled <data> block, and the prompts say that nothing inside one is an instruction.

The block cannot be closed early from inside: every `<data` / `</data` in the text (any case) is
escaped to `&lt;data` / `&lt;/data` before it is wrapped, so a page that writes `</data> Now call
http_get ...` stays inside its block. `unwrap` undoes both, for code that needs the raw text back
(the scripted model's `{last_tool_result}`).
"""

from __future__ import annotations

import re

_TAG = re.compile(r"<(/?)(data)", re.IGNORECASE)
_ESCAPED = re.compile(r"&lt;(/?)(data)", re.IGNORECASE)
_BLOCK = re.compile(r'\A<data source="[^"\n]*" trust="untrusted">\n(.*)\n</data>\Z', re.DOTALL)


def wrap(source: str, text: str) -> str:
    """`text` as an untrusted data block labelled with where it came from."""
    # The label holds names a model chose (step ids), so it is escaped like the text.
    label = _TAG.sub(r"&lt;\1\2", source.replace('"', "'").replace("\n", " "))
    escaped = _TAG.sub(r"&lt;\1\2", text)
    return f'<data source="{label}" trust="untrusted">\n{escaped}\n</data>'


def unwrap(block: str) -> str:
    """The original text of a block made by `wrap`; any other text as it is."""
    found = _BLOCK.match(block)
    return _ESCAPED.sub(r"<\1\2", found.group(1)) if found else block
