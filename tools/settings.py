"""Settings shared by every tool family."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tools.netguard import AllowList


@dataclass(frozen=True)
class ToolSettings:
    """Where the tools may act and how much they may read.

    workspace: the only folder the file tools can touch (created if missing).
    sql_database: SQLite file for `sql_query`; None disables the tool's work.
    net_allow: internal hosts/networks the network tools may reach (tools/netguard.py).
    """

    workspace: Path
    sql_database: Path | None = None
    http_timeout_s: float = 10.0
    http_max_bytes: int = 1_000_000
    read_max_bytes: int = 200_000
    write_max_bytes: int = 1_000_000
    # Internal hosts/networks the network tools may reach: the server's PLANEXEC_NET_ALLOW.
    net_allow: AllowList = field(default_factory=AllowList.from_env)
