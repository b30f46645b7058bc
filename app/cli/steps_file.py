"""Reading the steps of a plan edit (`planexec approve --edit FILE`) without trusting the file.

JSON is parsed as JSON; anything else as YAML with a loader that refuses anchors and aliases
(`&a` / `*a`): a few hundred bytes of nested aliases expand to gigabytes (the "billion laughs"),
and the expanded plan would then be stored in the checkpoint. The file is also size-capped before
it is parsed, and nesting too deep for the parser is a clear error, not a crash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

MAX_EDIT_FILE_BYTES = 256_000


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses anchors and aliases."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "YAML anchors and aliases (& and *) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


def load_steps_file(path: Path) -> list[dict[str, Any]]:
    """Steps for an edit: a JSON/YAML list of {id, description, depends_on}, or {steps: [...]};
    ValueError with what is wrong and what to do."""
    shown = repr(str(path))
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_EDIT_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read steps from {shown}: {exc.strerror or exc}") from None
    if len(raw) > MAX_EDIT_FILE_BYTES:
        raise ValueError(
            f"{shown} is over {MAX_EDIT_FILE_BYTES} bytes; a plan edit is a short list of steps"
        )
    try:
        text = raw.decode("utf-8")
        if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_NoAliasLoader)  # a safe loader without aliases
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        # YAML names its input "<unicode string>": the file is what the person knows.
        said = str(exc).replace('"<unicode string>"', shown)
        raise ValueError(f"cannot read steps from {shown}: {said}") from None
    except RecursionError:
        raise ValueError(f"cannot read steps from {shown}: it is nested too deeply") from None
    steps = data.get("steps") if isinstance(data, dict) else data
    if not isinstance(steps, list):
        raise ValueError(
            f"{shown} holds no list of steps: give a list of "
            "{id, description, depends_on}, or an object with a 'steps' list"
        )
    return steps
