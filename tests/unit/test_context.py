"""`Context`, the graph's run configuration, and the model checks made before a run starts."""

from __future__ import annotations

import os
from dataclasses import asdict, fields

import pytest

from app.context import Context, resolve_context, restore_context
from app.models import ModelConfigError, check_model
from tools import DEFAULT_TOOLS


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PLANEXEC_* or OPENAI_* settings leak in from the developer's shell."""
    for name in [n for n in os.environ if n.startswith(("PLANEXEC_", "OPENAI_"))]:
        monkeypatch.delenv(name)


def test_defaults() -> None:
    ctx = Context()
    assert ctx.planner_model == "openai:gpt-4o"
    assert ctx.executor_model == "openai:gpt-4o-mini"
    assert ctx.replanner_model == "openai:gpt-4o"
    assert ctx.max_replans == 5
    assert ctx.max_steps == 12
    assert ctx.max_tool_calls_per_step == 6
    assert ctx.replan_every == 0
    assert ctx.max_concurrency == 16
    assert ctx.approve_plan is False
    assert ctx.tools == list(DEFAULT_TOOLS)


def test_default_tool_list_is_not_shared_between_contexts() -> None:
    a, b = Context(), Context()
    a.tools.append("extra")
    assert "extra" not in b.tools


def test_every_field_has_a_description() -> None:
    # LangGraph Studio renders the run form from these.
    for f in fields(Context):
        assert f.metadata.get("description", "").strip(), f"{f.name} has no description"


def test_env_fills_only_fields_left_at_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANEXEC_MAX_REPLANS", "3")
    monkeypatch.setenv("PLANEXEC_EXECUTOR_MODEL", "openai:gpt-4.1-nano")

    assert Context().max_replans == 3  # parsed as an int
    assert Context().executor_model == "openai:gpt-4.1-nano"
    assert Context(max_replans=7).max_replans == 7  # an explicit value wins
    assert Context(max_replans=7).max_steps == 12  # other fields keep their defaults


def test_env_list_fields_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANEXEC_TOOLS", "calculator, sql_query,")
    assert Context().tools == ["calculator", "sql_query"]


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("true", True), ("false", False)])
def test_env_bool_fields(monkeypatch: pytest.MonkeyPatch, raw: str, value: bool) -> None:
    monkeypatch.setenv("PLANEXEC_APPROVE_PLAN", raw)
    assert Context().approve_plan is value


def test_a_stored_context_is_restored_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = asdict(Context())  # what start_run records: max_replans 5, executor gpt-4o-mini
    monkeypatch.setenv("PLANEXEC_MAX_REPLANS", "1")  # the shell (or worker) that resumes differs
    monkeypatch.setenv("PLANEXEC_EXECUTOR_MODEL", "openai:gpt-4.1")

    restored = restore_context(stored)  # as runner.resume_run rebuilds it

    assert (restored.max_replans, restored.executor_model) == (5, "openai:gpt-4o-mini")


def test_unprefixed_env_names_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKSPACE", "/ci/checkout")  # set by CI systems
    monkeypatch.setenv("MAX_REPLANS", "1")
    ctx = Context()
    assert (ctx.workspace, ctx.max_replans) == (".planexec/workspace", 5)


def test_resolve_context() -> None:
    assert resolve_context(None) == Context()
    assert resolve_context({"max_steps": 3}).max_steps == 3  # as the server passes it
    ctx = Context(max_concurrency=1)
    assert resolve_context(ctx) is ctx


def test_a_server_callers_context_lets_the_environment_fill_values_left_at_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A server run's context arrives as a dict, maybe a form with every field filled in
    # (Studio): a value equal to the default counts as left at it, so the deployment's
    # PLANEXEC_* settings hold (README, Configuration); any other value is the caller's.
    default = Context().max_concurrency
    monkeypatch.setenv("PLANEXEC_MAX_CONCURRENCY", "2")
    assert resolve_context({"max_concurrency": default}).max_concurrency == 2
    assert resolve_context({"max_concurrency": 5}).max_concurrency == 5
    with pytest.raises(TypeError, match="max_concurency"):
        resolve_context({"max_concurency": 5})


def test_openai_model_without_key_says_what_to_set() -> None:
    with pytest.raises(ModelConfigError) as info:
        check_model("openai:gpt-4o")
    message = str(info.value)
    assert "OPENAI_API_KEY" in message
    assert "planexec demo" in message


def test_openai_model_with_key_or_base_url_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")
    check_model("openai:llama3")  # a local OpenAI-compatible server needs no key
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    check_model("openai:gpt-4o")


def test_model_string_needs_a_provider() -> None:
    with pytest.raises(ModelConfigError, match="is not 'provider:model'"):
        check_model("gpt-4o")


def test_scripted_models_name_a_scenario() -> None:
    check_model("scripted:demo")
    with pytest.raises(ModelConfigError, match="no scenario named 'no-such-scenario'"):
        check_model("scripted:no-such-scenario")


def test_explicit_values_win_over_the_environment_even_when_equal_to_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLANEXEC_MAX_CONCURRENCY", "1")
    monkeypatch.setenv("PLANEXEC_MAX_REPLANS", "2")
    # --max-concurrency 4 on the command line is 4, though 4 is also the default.
    ctx = Context.of(max_concurrency=4)
    assert (ctx.max_concurrency, ctx.max_replans) == (4, 2)
    with pytest.raises(TypeError, match="max_concurency"):
        Context.of(max_concurency=4)


def test_a_provider_whose_package_is_missing_is_refused_before_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ModelConfigError, match="anthropic:claude-3-5-sonnet-latest"):
        check_model("anthropic:claude-3-5-sonnet-latest")
