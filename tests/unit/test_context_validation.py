"""Every Context field is type-checked, wherever its value comes from (app/context.py)."""

from __future__ import annotations

import dataclasses

import pytest

from app.context import Context, ContextError, resolve_context, restore_context


@pytest.fixture(autouse=True)
def no_planexec_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in [n for n in os.environ if n.startswith("PLANEXEC_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"max_concurrency": "two"},
            "Context field 'max_concurrency' must be an integer, got 'two'",
        ),
        ({"max_concurrency": True}, "Context field 'max_concurrency' must be an integer, got True"),
        ({"tools": "list_files"}, "(a list such as ['list_files'], not a string)"),
        (
            {"tools": ["calculator", 3]},
            "Context field 'tools' must be a list, got ['calculator', 3]",
        ),
        ({"approve_plan": "yes"}, "Context field 'approve_plan' must be true or false"),
        ({"model_timeout_s": "fast"}, "Context field 'model_timeout_s' must be a number"),
        ({"workspace": 7}, "Context field 'workspace' must be a string, got 7"),
        # A number out of range is not "must be a number": the message says the range.
        (
            {"tool_timeout_s": 0},
            "'tool_timeout_s' must be a number in range, got 0: Input should be greater than 0",
        ),
    ],
)
def test_a_wrong_type_is_refused_naming_the_field(values: dict, message: str) -> None:
    for make in (
        lambda: Context(**values),
        lambda: resolve_context(values),
        lambda: Context.of(**values),
    ):
        with pytest.raises(ContextError) as info:
            make()
        assert message in str(info.value)


def test_every_field_is_checked_including_ones_added_later() -> None:
    """No field escapes: each refuses a value of a type no annotation here accepts."""
    for f in dataclasses.fields(Context):
        with pytest.raises(ContextError, match=f"Context field '{f.name}'"):
            Context(**{f.name: object()})


def test_right_types_pass_and_an_int_is_a_float() -> None:
    ctx = Context(max_concurrency=2, tools=["calculator"], model_timeout_s=5)
    assert ctx.model_timeout_s == 5.0 and isinstance(ctx.model_timeout_s, float)


def test_a_recorded_context_is_checked_too() -> None:
    recorded = dataclasses.asdict(Context())
    assert restore_context(recorded) == Context()
    with pytest.raises(ContextError, match="max_steps"):
        restore_context({**recorded, "max_steps": "12"})


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ("4", "max_concurrency", 4),
        ("0.5", "model_timeout_s", 0.5),
        ("yes", "approve_plan", True),
        ("off", "approve_plan", False),
        ("calculator, read_file", "tools", ["calculator", "read_file"]),
        ('["calculator", "mypkg.tools:search"]', "tools", ["calculator", "mypkg.tools:search"]),
    ],
)
def test_environment_strings_are_parsed_by_field_type(
    monkeypatch: pytest.MonkeyPatch, env: str, field: str, value: object
) -> None:
    monkeypatch.setenv(f"PLANEXEC_{field.upper()}", env)
    assert getattr(Context(), field) == value


@pytest.mark.parametrize(
    ("field", "env", "message"),
    [
        (
            "max_concurrency",
            "two",
            "'max_concurrency' from PLANEXEC_MAX_CONCURRENCY must be an integer",
        ),
        (
            "approve_plan",
            "maybe",
            "'approve_plan' from PLANEXEC_APPROVE_PLAN must be true or false",
        ),
        ("tools", '["calculator", 3]', "'tools' from PLANEXEC_TOOLS must be a list"),
        ("tools", "[broken", "PLANEXEC_TOOLS='[broken' is not valid JSON"),
    ],
)
def test_bad_environment_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, field: str, env: str, message: str
) -> None:
    monkeypatch.setenv(f"PLANEXEC_{field.upper()}", env)
    with pytest.raises(ContextError) as info:
        Context()
    assert message in str(info.value)


def _numeric_fields() -> list[tuple[str, type]]:
    return [
        (f.name, type(f.default))
        for f in dataclasses.fields(Context)
        if type(f.default) in (int, float)
    ]


@pytest.mark.parametrize(("name", "kind"), _numeric_fields())
def test_every_number_is_finite_in_range_and_fits_a_database(name: str, kind: type) -> None:
    """inf and nan passed `> 0` checks and JSON has no spelling for them: a recorded run came
    back with null and could not be resumed. An integer past 64 bits failed the database write
    with a traceback. A negative budget ended the run at once. Each is refused naming the field,
    wherever it comes from."""
    bad = [-1, 2**63] if kind is int else [float("inf"), float("nan"), -1.0]
    for value in bad:
        with pytest.raises(ContextError, match=f"Context field '{name}'"):
            Context.of(**{name: value})
        with pytest.raises(ContextError, match=f"Context field '{name}'"):
            resolve_context({name: value})


def test_numbers_from_the_environment_are_held_to_the_same_ranges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for env, message in (
        ("PLANEXEC_MAX_COST_USD", "finite"),
        ("PLANEXEC_MODEL_TIMEOUT_S", "finite"),
    ):
        monkeypatch.setenv(env, "nan")
        with pytest.raises(ContextError, match=message):
            Context()
        monkeypatch.delenv(env)
    monkeypatch.setenv("PLANEXEC_MAX_CONCURRENCY", "0")
    with pytest.raises(ContextError, match="greater than or equal to 1"):
        Context()


def test_a_run_recorded_before_the_ranges_is_read_back_as_it_behaved() -> None:
    """A paused run recorded with PLANEXEC_MAX_CONCURRENCY=0 (the scheduler ran one step at a
    time) could no longer be approved or resumed. Budgets are not widened: a negative one
    (which ended the run at once) is still refused, not read as 0, which means no limit."""
    recorded = dataclasses.asdict(Context())
    old = restore_context({**recorded, "max_concurrency": 0, "replan_every": -1, "max_replans": -2})
    assert (old.max_concurrency, old.replan_every, old.max_replans) == (1, 0, 0)
    with pytest.raises(ContextError, match="max_total_tokens"):
        restore_context({**recorded, "max_total_tokens": -5})
