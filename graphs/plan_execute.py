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
from langgraph.runtime import get_runtime
from langgraph.store.base import BaseStore

from app.context import Context, resolve_context
from graphs.approval import approve
from graphs.planner import make_plan
from graphs.replanner import replan
from graphs.scheduler import make_execute
from graphs.state import BUDGET_EXCEEDED, FAILED, InputState, State
from tools import TOOL_NAMES


def _after_executor(state: State) -> str:
    if state.get("status") in (FAILED, BUDGET_EXCEEDED):
        return END
    # A batch cut short by Ctrl-C is not news for the replanner: run the remaining steps.
    return "executor" if state.get("batch_cut") else "replanner"


def _after_planner(state: State) -> str:
    if state.get("status") == FAILED:
        return END
    return "approval" if resolve_context(get_runtime().context).approve_plan else "executor"


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
    known_tools = set(TOOL_NAMES) | {t.name for t in tools or ()}
    builder.add_node("planner", make_plan(known_tools))  # goal -> validated plan
    # executor: runs ready steps in parallel until the replanner should look
    builder.add_node("executor", make_execute(tools or ()))
    # replanner: continue, revise the remaining steps (via approval if on), or finish
    builder.add_node("replanner", replan, destinations=("executor", "approval", END))
    # approval: a person approves, edits or rejects the plan (LangGraph interrupt)
    builder.add_node("approval", approve, destinations=("executor", END))
    builder.add_edge(START, "planner")
    builder.add_conditional_edges(
        "planner", _after_planner, {"approval": "approval", "executor": "executor", END: END}
    )
    builder.add_conditional_edges(
        "executor",
        _after_executor,
        {"executor": "executor", "replanner": "replanner", END: END},
    )
    return builder.compile(checkpointer=checkpointer, store=store, name="planexec")


graph = build_graph()
