"""`plan_problems`: the rules a plan (or a revision) must keep beyond its schema.

Its messages are fed back to the model on a retry, so each test also checks that the message
names the offending step.
"""

from __future__ import annotations

from graphs.schemas import PlanStep, plan_problems


def step(step_id: str, *depends_on: str) -> PlanStep:
    return PlanStep(id=step_id, description=f"do {step_id}", depends_on=list(depends_on))


def test_a_valid_plan_has_no_problems() -> None:
    steps = [step("s1"), step("s2", "s1"), step("s3", "s1"), step("s4", "s2", "s3")]
    assert plan_problems(steps, max_steps=12) == []


def test_dependencies_may_point_forward() -> None:
    # Order in the list is not execution order: s1 may depend on a step listed after it.
    assert plan_problems([step("s1", "s2"), step("s2")], max_steps=12) == []


def test_empty_plan() -> None:
    assert plan_problems([], max_steps=12) == ["the plan has no steps; give at least one"]


def test_too_many_steps() -> None:
    steps = [step(f"s{i}") for i in range(1, 5)]
    assert plan_problems(steps[:3], max_steps=3) == []  # exactly at the cap is fine
    assert plan_problems(steps, max_steps=3) == ["the plan has 4 steps; the limit is 3"]


def test_duplicate_ids() -> None:
    problems = plan_problems([step("s1"), step("s2"), step("s1")], max_steps=12)
    assert problems == ["step id 's1' is used more than once; ids must be unique"]


def test_empty_id() -> None:
    blank = PlanStep(id="  ", description="fetch the data")
    assert plan_problems([step("s1"), blank], max_steps=12) == [
        "a step has an empty id (description: 'fetch the data')"
    ]


def test_a_blank_description_is_no_description() -> None:
    """An executor step's description is its whole task: spaces tell the executor nothing."""
    blank = PlanStep(id="s2", description="  \n ")
    assert plan_problems([step("s1"), blank], max_steps=12) == [
        "step 's2' has no description; say what the executor must do"
    ]


def test_unknown_dependency() -> None:
    problems = plan_problems([step("s1"), step("s2", "s9")], max_steps=12)
    assert problems == ["step 's2' depends on unknown step 's9'"]


def test_self_dependency_is_reported_once_and_not_as_a_cycle() -> None:
    problems = plan_problems([step("s1", "s1")], max_steps=12)
    assert problems == ["step 's1' depends on itself"]


def test_cycle_message_shows_the_cycle_path() -> None:
    steps = [step("a", "b"), step("b", "c"), step("c", "a"), step("d", "a")]
    assert plan_problems(steps, max_steps=12) == ["the dependencies form a cycle: a -> b -> c -> a"]


def test_two_step_cycle_beside_valid_steps() -> None:
    steps = [step("s1"), step("s2", "s1", "s3"), step("s3", "s2")]
    assert plan_problems(steps, max_steps=12) == ["the dependencies form a cycle: s2 -> s3 -> s2"]


def test_revision_may_depend_on_a_completed_step() -> None:
    revision = [step("s5", "s1"), step("s6", "s5", "s2")]
    assert plan_problems(revision, max_steps=12, completed=["s1", "s2"]) == []
    # Without knowing s1 and s2 are done, the same revision has unknown dependencies.
    assert plan_problems(revision, max_steps=12) == [
        "step 's5' depends on unknown step 's1'",
        "step 's6' depends on unknown step 's2'",
    ]


def test_revision_may_not_reuse_a_completed_id() -> None:
    problems = plan_problems([step("s1"), step("s3", "s1")], max_steps=12, completed=["s1"])
    assert problems == ["step id 's1' belongs to a completed step; use a new id"]


def test_every_problem_is_reported_at_once() -> None:
    steps = [step("s1", "s1"), step("s1"), step("s2", "nope")]
    assert plan_problems(steps, max_steps=2) == [
        "the plan has 3 steps; the limit is 2",
        "step id 's1' is used more than once; ids must be unique",
        "step 's1' depends on itself",
        "step 's2' depends on unknown step 'nope'",
    ]


def test_a_step_may_name_only_the_runs_tools() -> None:
    steps = [
        PlanStep(id="s1", description="query", tools=["sql_query"]),
        PlanStep(id="s2", description="post", tools=["http_request", "calculator"]),
        PlanStep(id="s3", description="anything the run has"),
    ]
    run = {"sql_query": None, "calculator": None}
    problems = plan_problems(steps, max_steps=5, tools=run)
    assert problems == [
        "step 's2' names tool 'http_request', which this run does not have "
        "(the run's tools: calculator, sql_query)"
    ]
    assert plan_problems(steps[:1] + steps[2:], max_steps=5, tools={"sql_query": None}) == []


def test_a_chain_of_thousands_of_steps_is_checked_without_recursion() -> None:
    """The cycle search recursed once per step: 1,200 steps reached Python's recursion limit
    and the run ended as the model's failure instead of a problem fed back."""
    chain = [step(str(i), str(i + 1)) for i in range(1, 5000)] + [step("5000", "1")]
    problems = plan_problems(chain, max_steps=12)
    (cycle,) = [p for p in problems if "cycle" in p]
    assert cycle.startswith("the dependencies form a cycle: 1 -> 2 -> 3")
    assert cycle.endswith("-> 5000 -> 1")
    assert plan_problems([step(str(i), str(i + 1)) for i in range(1, 5000)] + [step("5000")],
                         max_steps=10_000) == []  # fmt: skip


def test_cycles_are_found_wherever_they_start() -> None:
    from graphs.schemas import _find_cycle

    def cycle(deps: dict[str, list[str]]) -> list[str] | None:
        return _find_cycle([step(k, *v) for k, v in deps.items()])

    assert cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert cycle({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": ["b"]}) == ["b", "d", "b"]
    assert cycle({"x": [], "a": ["x", "unknown"], "b": ["a"]}) is None
    assert cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None, "a diamond is no cycle"


def test_a_tool_steps_number_past_64_bits_is_a_problem() -> None:
    """A JSON plan's args are the model's: an int msgpack cannot hold would fail the run's next
    checkpoint write (TypeError: Integer exceeds 64-bit range)."""
    from langchain_core.tools import tool

    @tool
    def lookup(key: int) -> str:
        """Look up."""
        return ""

    def tool_step(value: int) -> PlanStep:
        return PlanStep(id="s1", description="", tool="lookup", args={"key": value})

    (problem,) = plan_problems([tool_step(2**64)], max_steps=12, tools={"lookup": lookup})
    assert problem == "step 's1' has a number past 64 bits in its args; write it as a string"
    assert plan_problems([tool_step(2**63 - 1)], max_steps=12, tools={"lookup": lookup}) == []
