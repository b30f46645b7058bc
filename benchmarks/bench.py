"""planexec against a ReAct agent (LangChain create_agent, with and without parallel tool calls)
on the same tasks, tools, token counter, prices and simulated latency: calls, tokens, cost, wall
and the ratios. The same as `planexec bench` (the code is app/bench/, so the installed command
has it); arguments are passed through.

    python benchmarks/bench.py --quick
    python benchmarks/bench.py --repeat 3 --json bench.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.cli.commands import app  # noqa: E402

if __name__ == "__main__":
    app(["bench", *sys.argv[1:]], prog_name="benchmarks/bench.py")
