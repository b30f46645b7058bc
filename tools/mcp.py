"""Tools from MCP servers, loaded with `langchain-mcp-adapters`.

Which servers exist is the deployment's decision, never a run's: they are read from the
environment variable PLANEXEC_MCP_SERVERS (a JSON object, server name -> connection, in the shape
`MultiServerMCPClient` takes), because a stdio server is a command this process starts, and a run's
context arrives from whoever can reach the LangGraph server. A run chooses among them by naming
`mcp:SERVER` (every tool of that server) or `mcp:SERVER/TOOL` in `Context.tools`. Tools are named
`SERVER_TOOL`, so two servers' tools never collide with each other; one whose name is a built-in
tool's (server `http`, tool `get`) is refused (tools/registry.py).

    PLANEXEC_MCP_SERVERS='{"math": {"transport": "stdio", "command": "python",
                                    "args": ["math_server.py"]},
                           "docs": {"transport": "streamable_http",
                                    "url": "http://127.0.0.1:8000/mcp"}}'

MCP tools are async-only and the executor calls tools synchronously, so each tool gets a sync
implementation that runs its coroutine to the end on an event loop of its own (`run_coroutine`),
within MCP_CALL_TIMEOUT. When the executor is asyncio-native it can await the tools' own coroutine,
which every tool keeps. Each call opens its own session (the adapters' default without a shared
session): a stdio server is started per call, so no server process outlives the call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
from collections.abc import Coroutine
from functools import lru_cache
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

ENV_VAR = "PLANEXEC_MCP_SERVERS"
PREFIX = "mcp:"
MCP_CALL_TIMEOUT = 60.0  # seconds for one tool call, session start included
MCP_LIST_TIMEOUT = 30.0  # seconds to start a server and list its tools
TRANSPORTS = {"stdio": ("command",), "streamable_http": ("url",)}


class MCPConfigError(ValueError):
    """An MCP entry or server definition that cannot be used, with what to do."""


def is_mcp_entry(name: str) -> bool:
    return name.startswith(PREFIX)


def configured_servers() -> dict[str, dict[str, Any]]:
    """The servers PLANEXEC_MCP_SERVERS defines (empty when unset); MCPConfigError if malformed."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return {}
    try:
        servers = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MCPConfigError(f"{ENV_VAR} is not valid JSON: {exc}") from exc
    if not isinstance(servers, dict):
        raise MCPConfigError(f"{ENV_VAR} must be a JSON object: server name -> connection")
    for name, connection in servers.items():
        _check_connection(name, connection)
    return servers


def _check_connection(name: str, connection: Any) -> None:
    where = f"{ENV_VAR}[{name!r}]"
    if not isinstance(connection, dict):
        raise MCPConfigError(f"{where} must be an object with a 'transport'")
    transport = connection.get("transport")
    if transport not in TRANSPORTS:
        raise MCPConfigError(
            f"{where} has transport {transport!r}; use one of {', '.join(TRANSPORTS)}"
        )
    for key in TRANSPORTS[transport]:
        if not isinstance(connection.get(key), str) or not connection[key]:
            raise MCPConfigError(f"{where} needs a '{key}' string for transport {transport!r}")


def mcp_tools(entry: str) -> list[BaseTool]:
    """The tools `entry` ('mcp:SERVER' or 'mcp:SERVER/TOOL') stands for, ready for a sync caller.
    MCPConfigError when the server is not configured, cannot be reached or has no such tool."""
    server, _, wanted = entry[len(PREFIX) :].partition("/")
    servers = configured_servers()
    if server not in servers:
        known = ", ".join(sorted(servers)) or f"none ({ENV_VAR} is not set)"
        raise MCPConfigError(f"{entry!r}: no MCP server {server!r}; configured servers: {known}")
    tools = _server_tools(server, json.dumps(servers[server], sort_keys=True))
    if not wanted:
        return list(tools)
    chosen = [t for t in tools if t.name == f"{server}_{wanted}"]
    if not chosen:
        names = ", ".join(t.name.removeprefix(f"{server}_") for t in tools)
        raise MCPConfigError(f"{entry!r}: server {server!r} has no tool {wanted!r}; it has {names}")
    return chosen


@lru_cache(maxsize=32)
def _server_tools(server: str, connection_json: str) -> tuple[BaseTool, ...]:
    # Cached per definition: listing starts a stdio server, and the planner and the executor
    # both ask. The tools hold no session, so a cached tool opens a fresh one per call.
    from langchain_mcp_adapters.client import MultiServerMCPClient

    client = MultiServerMCPClient({server: json.loads(connection_json)}, tool_name_prefix=True)
    try:
        tools = run_coroutine(client.get_tools(server_name=server), MCP_LIST_TIMEOUT)
    except Exception as exc:
        raise MCPConfigError(
            f"MCP server {server!r} could not be reached to list its tools: {_reason(exc)}"
        ) from exc
    return tuple(_with_sync_call(t) for t in tools)


def _with_sync_call(tool: BaseTool) -> BaseTool:
    """`tool` with a sync implementation that runs its coroutine (the coroutine stays), its text
    content as one string (the model and the step's result read text, not content blocks)."""
    coroutine = tool.coroutine  # type: ignore[attr-defined]

    async def acall(**kwargs: Any) -> tuple[Any, Any]:
        content, artifact = await coroutine(**kwargs)
        return _as_text(content), artifact

    def call(**kwargs: Any) -> tuple[Any, Any]:
        return run_coroutine(acall(**kwargs), MCP_CALL_TIMEOUT)

    return StructuredTool(
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        func=call,
        coroutine=acall,
        response_format=tool.response_format,
        metadata=tool.metadata,
        handle_tool_error=tool.handle_tool_error,
    )


def _as_text(content: Any) -> Any:
    """Text blocks joined into one string; other content (images, resources) as it is."""
    if isinstance(content, list) and all(
        isinstance(b, dict) and b.get("type") == "text" for b in content
    ):
        return "\n".join(str(b.get("text", "")) for b in content)
    return content


def run_coroutine(coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
    """Run `coroutine` to its end from sync code, within `timeout` seconds.

    On this thread's own event loop when none is running here; from inside a running loop (a
    sync tool called from async code) on a short-lived thread, since that loop cannot be
    re-entered."""
    bounded = asyncio.wait_for(coroutine, timeout)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(bounded)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, bounded).result(timeout + 5)


def _reason(exc: BaseException) -> str:
    # anyio wraps session failures in exception groups; the first leaf says what happened.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return f"no answer within {MCP_LIST_TIMEOUT:.0f} s"
    return str(exc) or type(exc).__name__
