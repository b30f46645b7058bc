"""The `planexec` command's entry point: imports nothing until it runs, so Ctrl-C while the CLI
is still loading (rich, typer, LangChain take a second) ends quietly with 130, not a traceback
from whatever module was being imported."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from app.cli.commands import main as run

        run()
    except KeyboardInterrupt:  # the commands handle Ctrl-C once they run; this is before
        sys.exit(130)
