"""Which journal a resume (and `planexec show`) reads for a checkpoint's pending task
(graphs/journal.py `StepJournal.for_pending_task`)."""

from __future__ import annotations

from types import SimpleNamespace

from langgraph.store.memory import InMemoryStore

from graphs.journal import StepJournal, planner_run_id


def _task(name: str, task_id: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, id=task_id)


def test_a_pending_planner_reads_the_journal_of_the_run_it_is_starting() -> None:
    store = InMemoryStore()
    journal = StepJournal.for_pending_task(store, "t", "old-run", [_task("planner", "p1")])
    assert journal.scope == "p1"
    assert journal._namespace[3] == planner_run_id("p1")


def test_a_budget_stop_keeps_its_scope_and_run_even_with_the_planner_pending() -> None:
    """A budget stopped the run while the plan streamed: the stopped steps' turns are in the
    scope it recorded, under the run's own id, not a fresh planner's."""
    store = InMemoryStore()
    tasks = [_task("planner", "p1")]
    journal = StepJournal.for_pending_task(store, "t", "run-1", tasks, budget_scope="X")
    assert (journal.scope, journal._namespace[3]) == ("X", "run-1")


def test_a_pending_executor_reads_its_own_scope() -> None:
    store = InMemoryStore()
    journal = StepJournal.for_pending_task(store, "t", "run-1", [_task("executor", "e1")])
    assert (journal.scope, journal._namespace[3]) == ("e1", "run-1")
