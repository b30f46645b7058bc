"""The plan-and-execute graph.

    planner ──> [approval] ──> executor ──> replanner ──> END
                    ^              ^             │
                    │              └─────────────┤  continue
                    └────────────────────────────┘  a revised plan

`approval` is visited only with Context.approve_plan (a person approves, edits or rejects).

`build_graph(checkpointer=...)` is for the CLI and Python callers; `graph` is compiled without a
checkpointer because the LangGraph server (`langgraph dev`, via langgraph.json) brings its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.tools import BaseTool
from langgraph._internal._runnable import RunnableCallable
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore

from app.context import Context
from graphs.approval import make_approve
from graphs.plan_cache import settling
from graphs.planner import make_plan
from graphs.replanner import make_replan
from graphs.retries import MODEL_NODE_RETRY
from graphs.routes import follow_route, recorded_route
from graphs.run_context import run_context
from graphs.scheduler import is_news as _is_news
from graphs.scheduler import make_execute
from graphs.state import BUDGET_EXCEEDED, FAILED, InputState, State
from graphs.summaries import summarized


def _after_executor(state: State) -> str:
    if state.get("status") in (FAILED, BUDGET_EXCEEDED):
        return END
    # A batch cut short by Ctrl-C is not news for the replanner: run the remaining steps.
    return "executor" if state.get("batch_cut") else "replanner"


def _after_planner(state: State) -> str:
    if state.get("status") in (FAILED, BUDGET_EXCEEDED):
        return END
    if not state.get("batch_cut") and any(_is_news(r) for r in state.get("results", {}).values()):
        # A step that ran while the plan streamed failed or surprised: the replanner looks first.
        return "replanner"
    # The recorded context, not get_runtime(): there is no runtime during update_state.
    return "approval" if run_context(state).approve_plan else "executor"


def _summarized(name: str, node: RunnableCallable) -> RunnableCallable:
    """An async-native node (sync and async faces) with a summary added to its update, and the
    plan cache settled when the update ends the run (graphs/plan_cache.py)."""
    return RunnableCallable(
        settling(summarized(name, node.func)), settling(summarized(name, node.afunc)), name=name
    )


def build_graph(
    *,
    checkpointer: BaseCheckpointSaver | None = None,
    store: BaseStore | None = None,
    tools: Sequence[BaseTool] | None = None,
) -> CompiledStateGraph:
    """The compiled graph. `tools` are your own LangChain tools, offered to the executor beside
    the registry's tools that `Context.tools` names; `store` journals each finished step so a
    resumed run does not redo it."""
    builder = StateGraph(State, context_schema=Context, input_schema=InputState)
    # Each node's update also carries a one-line summary for the thread's history.
    # planner: goal -> validated plan, streamed, its steps starting as their definitions arrive;
    # retried on transient model errors
    builder.add_node(
        "planner",
        _summarized("planner", make_plan(tools or ())),
        retry_policy=MODEL_NODE_RETRY,
    )
    # executor: runs ready steps in parallel until the replanner should look
    builder.add_node("executor", _summarized("executor", make_execute(tools or ())))
    # replanner: continue, revise the remaining steps (via approval if on), or finish
    builder.add_node(
        "replanner",
        settling(summarized("replanner", recorded_route(make_replan(tools or ())))),
        retry_policy=MODEL_NODE_RETRY,
    )
    # approval: a person approves, edits or rejects the plan (LangGraph interrupt)
    builder.add_node(
        "approval", settling(summarized("approval", recorded_route(make_approve(tools or ()))))
    )
    builder.add_edge(START, "planner")
    builder.add_conditional_edges(
        "planner",
        _after_planner,
        {"approval": "approval", "executor": "executor", "replanner": "replanner", END: END},
    )
    builder.add_conditional_edges(
        "executor",
        _after_executor,
        {"executor": "executor", "replanner": "replanner", END: END},
    )
    # Where replanner and approval go is recorded in the state, so state edits route too.
    builder.add_conditional_edges(
        "replanner",
        follow_route,
        {"executor": "executor", "approval": "approval", END: END},
    )
    # approval may route to itself: a refused answer pauses again in a fresh node run.
    builder.add_conditional_edges(
        "approval", follow_route, {"executor": "executor", "approval": "approval", END: END}
    )
    return builder.compile(checkpointer=checkpointer, store=store, name="planexec")


graph = build_graph()
