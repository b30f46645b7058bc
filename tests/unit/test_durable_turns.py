"""Durable turns inside a step (graphs/executor.py + graphs/journal.StepTurns).

A "crash" here is a BaseException raised out of the model or the tool (the executor catches only
Exception), which leaves the turn journal exactly as a killed process would: whatever was written
before that moment. The step is then run again on the same store, as a resume does.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.store.memory import InMemoryStore

from app.context import Context
from graphs.budget import Spend
from graphs.executor import REPEAT, SURPRISE, Durability, run_step
from graphs.journal import StepJournal
from graphs.state import DONE, FAILED
from tools.step_context import idempotency_key


class Crash(BaseException):
    """Stands for the process dying at this point."""


class TurnModel(BaseChatModel):
    """Answers by turn: first a call to `charge`, then a final text. Counts what it is asked;
    `crash_on` makes that turn die like a killed process."""

    asked: list[int] = []
    crash_on: int | None = None

    @property
    def _llm_type(self) -> str:
        return "turns"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        # The sync path: LangChain's async generate turns a BaseException raised by the model
        # into an AttributeError (it reads `.generations` off it), which would hide the "kill".
        return self.invoke(input, config, **kwargs)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kw: Any) -> ChatResult:
        turn = sum(m.type == "ai" for m in messages)
        self.asked.append(turn)
        if turn == self.crash_on:
            raise Crash
        if turn == 0:
            reply = AIMessage(
                content="", tool_calls=[{"name": "charge", "args": {"amount": 5}, "id": "c0"}]
            )
        else:
            reply = AIMessage(content=f"charged: {messages[-1].content}")
        reply.usage_metadata = {"input_tokens": 100, "output_tokens": 10, "total_tokens": 110}
        return ChatResult(generations=[ChatGeneration(message=reply)])


class Card:
    """A side effect that records every call and the key it came with."""

    def __init__(self, crash_after_effect: bool = False) -> None:
        self.keys: list[str | None] = []
        self.crash_after_effect = crash_after_effect

    def tool(self) -> Any:
        @tool
        def charge(amount: int) -> str:
            """Charge the card."""
            self.keys.append(idempotency_key())
            if self.crash_after_effect:
                self.crash_after_effect = False  # die once, after the effect, before the answer
                raise Crash
            return f"receipt {len(self.keys)}"

        return charge


STEP = {"id": "pay", "description": "Pay the invoice.", "depends_on": [], "attempt": 1}


def execute(model: TurnModel, card: Card, journal: StepJournal, **durability: Any):
    turns = journal.turns(STEP, {})
    turns.begin()
    return run_step(
        STEP,
        goal="pay",
        dependencies={},
        model=model,
        model_name="openai:gpt-4o-mini",
        tools=[card.tool()],
        max_tool_calls=3,
        run_id="r1",
        durability=Durability(turns=turns, **durability),
    )


@pytest.fixture
def journal() -> StepJournal:
    return StepJournal(InMemoryStore(), "thread-1", "r1")


def test_killed_after_the_tool_answered_resumes_without_calling_it_or_the_model_again(
    journal: StepJournal,
) -> None:
    card = Card()
    with pytest.raises(Crash):
        execute(TurnModel(asked=[], crash_on=1), card, journal)
    assert len(card.keys) == 1

    model = TurnModel(asked=[])
    outcome = execute(model, card, journal)

    assert outcome.result["status"] == DONE
    assert "receipt 1\n" in outcome.result["result"], "the journaled answer was replayed"
    assert len(card.keys) == 1, "the tool call was repeated"
    assert model.asked == [1], "turn 0 was journaled and must not be asked again"
    assert outcome.usage["executor"]["calls"] == 2, "the replayed turn's usage still counts once"
    assert outcome.result["executions"] == 2
    assert outcome.result["tool_calls_made"] == 1


def test_a_call_cut_off_mid_way_is_repeated_with_the_same_key(journal: StepJournal) -> None:
    card = Card(crash_after_effect=True)
    with pytest.raises(Crash):
        execute(TurnModel(asked=[]), card, journal)

    model = TurnModel(asked=[])
    outcome = execute(model, card, journal, unknown_outcome=REPEAT)

    assert outcome.result["status"] == DONE
    assert len(card.keys) == 2 and card.keys[0] == card.keys[1] is not None
    assert model.asked == [1]
    assert outcome.result["tool_calls_made"] == 2, "show must count the repeated call"


def test_unknown_outcome_surprise_does_not_repeat_and_tells_the_replanner(
    journal: StepJournal,
) -> None:
    card = Card(crash_after_effect=True)
    with pytest.raises(Crash):
        execute(TurnModel(asked=[]), card, journal)

    outcome = execute(TurnModel(asked=[]), card, journal, unknown_outcome=SURPRISE)

    assert len(card.keys) == 1, "the call with an unknown outcome was repeated"
    assert outcome.result["status"] == FAILED
    assert outcome.result["surprise"].startswith("outcome unknown: tool charge")


def test_without_a_store_every_execution_starts_from_the_first_turn() -> None:
    journal = StepJournal(None, "thread-1", "r1")
    card = Card()
    with pytest.raises(Crash):
        execute(TurnModel(asked=[], crash_on=1), card, journal)
    execute(TurnModel(asked=[]), card, journal)
    assert len(card.keys) == 2


def test_a_budget_stops_a_step_between_turns_and_a_raised_one_continues_it(
    journal: StepJournal,
) -> None:
    card = Card()
    stopped = execute(
        TurnModel(asked=[]), card, journal, spend=Spend(Context(max_total_tokens=100), {})
    )
    assert stopped.stopped is not None and stopped.stopped["budget"] == "max_total_tokens"
    assert stopped.result == {}, "a stopped step has no result: it is not finished"
    assert card.keys == [], "no tool call starts once the budget is reached"

    model = TurnModel(asked=[])
    raised = Spend(Context(max_total_tokens=10_000), {})
    resumed = execute(model, card, journal, spend=raised)
    assert resumed.result["status"] == DONE
    assert model.asked == [1], "the turn paid before the budget stop is not asked again"
    assert len(card.keys) == 1


def test_a_tool_call_budget_stops_the_step_after_its_last_allowed_call(
    journal: StepJournal,
) -> None:
    card = Card()
    spend = Spend(Context(max_total_tool_calls=1), {})
    outcome = execute(TurnModel(asked=[]), card, journal, spend=spend)
    assert len(card.keys) == 1
    assert outcome.stopped is not None and outcome.stopped["spent"]["tool_calls"] == 1


def test_a_step_past_its_deadline_fails_without_a_new_call(journal: StepJournal) -> None:
    card = Card()
    outcome = execute(TurnModel(asked=[]), card, journal, deadline_seconds=1e-9)
    assert outcome.result["status"] == FAILED
    assert "deadline" in outcome.result["error"]
    assert card.keys == []


def test_turn_records_stay_out_of_the_step_journal(journal: StepJournal) -> None:
    execute(TurnModel(asked=[]), Card(), journal)
    assert journal.all() == {}, "turn records must not read as finished steps"


def test_the_final_reply_is_journaled_with_the_result_in_one_write(tmp_path: Any) -> None:
    # Through the scheduler, as runs do: a model step's answer and its result go to the store
    # as one batch (one durable transaction), and a resume finds both.
    import asyncio

    from langgraph.store.sqlite import SqliteStore

    from graphs.executor import StepOutcome, arun_step
    from graphs.scheduler import Batch

    class CountingStore(SqliteStore):
        batches: list[list[str]] = []

        def batch(self, ops: Any) -> Any:
            ops = list(ops)
            CountingStore.batches.append([type(op).__name__ for op in ops])
            return super().batch(ops)

    import sqlite3

    conn = sqlite3.connect(tmp_path / "store.sqlite", check_same_thread=False, isolation_level=None)
    store = CountingStore(conn)
    store.setup()
    journal = StepJournal(store, "thread-1", "r1")

    async def work(step: dict, deps: dict) -> StepOutcome:
        turns = journal.turns(step, deps)
        return await arun_step(
            step,
            goal="pay",
            dependencies={},
            model=TurnModel(asked=[]),
            model_name="openai:gpt-4o-mini",
            tools=[Card().tool()],
            max_tool_calls=3,
            durability=Durability(turns=turns),
        )

    CountingStore.batches.clear()
    ctx = Context.of(tools=[])

    async def main() -> None:
        batch = Batch(ctx, None, journal, work)
        batch.set_plan([dict(STEP)])
        await batch.drain()

    asyncio.run(main())
    writes = [b for b in CountingStore.batches if "PutOp" in b]
    # begin ("exec"), turn 0 (the tool call), the tool's started and done records, then the
    # result with the final reply: five writes, not six.
    assert writes[-1] == ["PutOp", "PutOp"], writes
    assert len(writes) == 5, writes
    assert journal.get(STEP, {})["result"]["status"] == DONE
    assert (
        journal.turns(STEP, {}).model_reply(1)["message"]["data"]["content"].startswith("charged")
    )


def test_replayed_turns_and_calls_count_toward_the_run_budgets(journal: StepJournal) -> None:
    """A resumed step's replayed model turn and tool call were paid for: the Spend of the visit
    that resumes it must count them (a stopped step's usage is in no result the state holds)."""
    card = Card()
    with pytest.raises(Crash):
        execute(TurnModel(asked=[], crash_on=1), card, journal)

    spend = Spend(Context(max_total_tokens=10_000, max_total_tool_calls=10), {})
    outcome = execute(TurnModel(asked=[]), card, journal, spend=spend)

    assert outcome.result["status"] == DONE
    assert len(card.keys) == 1
    spent = spend.spent()
    assert spent["tool_calls"] == 1, "the replayed call is not counted"
    assert spent["total_tokens"] == 220, "the replayed turn's tokens are not counted"


def test_a_call_repeated_after_a_crash_counts_twice_toward_the_tool_call_budget(
    journal: StepJournal,
) -> None:
    """The budget counts calls really made: a result whose call was repeated after a crash holds
    one tool_calls entry but two calls made, and a later executor visit must start from two."""
    card = Card(crash_after_effect=True)
    with pytest.raises(Crash):
        execute(TurnModel(asked=[]), card, journal)
    outcome = execute(TurnModel(asked=[]), card, journal, unknown_outcome=REPEAT)
    assert len(outcome.result["tool_calls"]) == 1 and len(card.keys) == 2

    spend = Spend(Context(max_total_tool_calls=2), {"results": {"pay": outcome.result}})
    assert spend.spent()["tool_calls"] == 2
    assert spend.exceeded() is not None


def test_a_journaled_tool_failure_fails_the_step_again_on_resume(journal: StepJournal) -> None:
    """Killed after a tool raised but before the step's result was written: the resume replays
    the failure (the step fails with the same error), it does not read the error text as the
    tool's answer and go on, nor call the tool again."""
    calls: list[int] = []

    @tool
    def charge(amount: int) -> str:
        """Charge the card."""
        calls.append(amount)
        raise ValueError("card declined")

    def once(model: TurnModel) -> Any:
        turns = journal.turns(STEP, {})
        turns.begin()
        return run_step(
            STEP, goal="pay", dependencies={}, model=model,
            model_name="openai:gpt-4o-mini", tools=[charge], max_tool_calls=3, run_id="r1",
            durability=Durability(turns=turns),
        )  # fmt: skip

    first = once(TurnModel(asked=[]))
    assert first.result["status"] == FAILED
    assert first.result["error"] == "tool charge failed: card declined"

    model = TurnModel(asked=[])
    again = once(model)
    assert calls == [5], "the failed call was made again"
    assert again.result["status"] == FAILED
    assert again.result["error"] == "tool charge failed: card declined"
    assert again.result["tool_calls"][0]["ok"] is False
    assert model.asked == []


def test_a_deadline_passed_during_a_model_turn_stops_the_tool_call_it_asked_for(
    journal: StepJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline is checked before each tool call, not only before model turns: a model turn
    that ends past it (here a clock the model moves on by 10 s) gets no tool call made."""
    import types

    import graphs.executor

    clock = [1000.0]
    monkeypatch.setattr(graphs.executor, "time", types.SimpleNamespace(time=lambda: clock[0]))

    class SlowModel(TurnModel):
        def _generate(self, messages: list[BaseMessage], *args: Any, **kw: Any) -> ChatResult:
            clock[0] += 10
            return super()._generate(messages, *args, **kw)

    card = Card()
    model = SlowModel(asked=[])
    outcome = execute(model, card, journal, deadline_seconds=5)

    assert model.asked == [0]
    assert card.keys == [], "a tool call was made past the step's deadline"
    assert outcome.result["status"] == FAILED
    assert outcome.result["error"] == "step deadline of 5 s passed"


def test_the_sync_face_journals_the_final_reply(journal: StepJournal) -> None:
    """`run_step` has no result journal to write the final reply with, so it journals it
    itself: a step run again on the same journal replays every turn and asks nothing."""
    card = Card()
    first = execute(TurnModel(asked=[]), card, journal)
    model = TurnModel(asked=[])
    again = execute(model, card, journal)
    assert model.asked == [], "the final reply was not journaled"
    assert again.result["result"] == first.result["result"]
    assert len(card.keys) == 1
