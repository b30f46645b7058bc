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
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore

from app.context import Context
from graphs.approval import make_approve
from graphs.planner import make_plan
from graphs.replanner import make_replan
from graphs.retries import MODEL_NODE_RETRY
from graphs.routes import follow_route, recorded_route
from graphs.run_context import run_context
from graphs.scheduler import make_execute
from graphs.state import FAILED, InputState, State
from graphs.summaries import summarized


def _after_executor(state: State) -> str:
    if state.get("status") == FAILED:
        return END
    # A batch cut short by Ctrl-C is not news for the replanner: run the remaining steps.
    return "executor" if state.get("batch_cut") else "replanner"


def _after_planner(state: State) -> str:
    if state.get("status") == FAILED:
        return END
    # The recorded context, not get_runtime(): there is no runtime during update_state.
    return "approval" if run_context(state).approve_plan else "executor"


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
    # planner: goal -> validated plan; retried on transient model errors
    builder.add_node(
        "planner", summarized("planner", make_plan(tools or ())), retry_policy=MODEL_NODE_RETRY
    )
    # executor: runs ready steps in parallel until the replanner should look
    builder.add_node("executor", summarized("executor", make_execute(tools or ())))
    # replanner: continue, revise the remaining steps (via approval if on), or finish
    builder.add_node(
        "replanner",
        summarized("replanner", recorded_route(make_replan(tools or ()))),
        retry_policy=MODEL_NODE_RETRY,
    )
    # approval: a person approves, edits or rejects the plan (LangGraph interrupt)
    builder.add_node(
        "approval", summarized("approval", recorded_route(make_approve(tools or ())))
    )
    builder.add_edge(START, "planner")
    builder.add_conditional_edges(
        "planner", _after_planner, {"approval": "approval", "executor": "executor", END: END}
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
    builder.add_conditional_edges("approval", follow_route, {"executor": "executor", END: END})
    return builder.compile(checkpointer=checkpointer, store=store, name="planexec")


graph = build_graph()
