"""The documentation that is generated from code stays in step with it."""

from __future__ import annotations

import json
from pathlib import Path

from app.scripted.scenarios import Scenario, bundled_names, load_scenario

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_scenario_json_schema_in_docs_is_current() -> None:
    committed = json.loads((DOCS / "scenario.schema.json").read_text())
    assert committed == Scenario.model_json_schema(), (
        "docs/scenario.schema.json is stale: run `planexec scenario-schema > "
        "docs/scenario.schema.json`"
    )


def test_every_bundled_scenario_loads() -> None:
    assert "demo" in bundled_names()
    for name in bundled_names():
        assert load_scenario(name).planner is not None


def test_events_doc_lists_every_event_kind() -> None:
    from graphs import events

    text = (DOCS / "events.md").read_text()
    kinds = [v for k, v in vars(events).items() if k.isupper() and isinstance(v, str)]
    assert kinds, "no event kinds found"
    for kind in kinds:
        assert f"`{kind}`" in text, f"docs/events.md does not document {kind!r}"
