"""A real MCP server for the tests (the `mcp` package's FastMCP): `python mcp_math_server.py
stdio`, or `... http PORT` for streamable HTTP at http://127.0.0.1:PORT/mcp."""

import asyncio
import sys

from mcp.server.fastmcp import FastMCP

port = int(sys.argv[2]) if len(sys.argv) > 2 else 8000
server = FastMCP("math", host="127.0.0.1", port=port, log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def query(sql: str) -> str:
    """Not a database: a server named `sql` would make this `sql_query`, a built-in's name."""
    return f"no database: {sql}"


@server.tool()
async def slow_echo(text: str, seconds: float = 0.0) -> str:
    """Echo the text after waiting `seconds`."""
    await asyncio.sleep(seconds)
    return f"echo: {text}"


if __name__ == "__main__":
    server.run(transport="stdio" if sys.argv[1] == "stdio" else "streamable-http")
