"""`planexec serve-scenario`: play a scenario as a local OpenAI-compatible API.

Registered on the CLI's Typer app by `register(app)`. The server itself (Starlette and uvicorn)
is imported only when the command runs, so the rest of the CLI does not depend on it.
"""

from __future__ import annotations

from typing import Annotated

import typer

EXIT_CONFIG = 4  # the CLI's exit code for a configuration or input error (nothing ran)


def register(app: typer.Typer) -> None:
    """Add the `serve-scenario` command to `app`."""

    @app.command("serve-scenario")
    def serve_scenario(
        scenario: Annotated[
            str, typer.Argument(help="A bundled scenario name (demo) or a scenario file.")
        ],
        host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port.")] = 8000,
        fail_first_429: Annotated[
            int,
            typer.Option("--fail-first-429", min=0, help="Answer the first N requests with 429."),
        ] = 0,
        fail_first_503: Annotated[
            int,
            typer.Option(
                "--fail-first-503", min=0, help="Answer the next N requests with 503 (after 429s)."
            ),
        ] = 0,
        bad_json_first: Annotated[
            bool,
            typer.Option(
                "--bad-json-first",
                help="Answer the first structured request with JSON that breaks its schema.",
            ),
        ] = False,
    ) -> None:
        """Serve SCENARIO as an OpenAI-compatible API (/v1/chat/completions, /v1/models), so
        planexec, or any OpenAI client, runs against it over HTTP as it would against Ollama or
        vLLM. Prints the OPENAI_BASE_URL to set; stop it with Ctrl-C."""
        try:
            from app.scripted.server import ServerFaults, serve
        except ImportError as exc:  # starlette / uvicorn missing
            typer.echo(
                f"error: serve-scenario needs starlette and uvicorn ({exc}); "
                "pip install starlette uvicorn",
                err=True,
            )
            raise typer.Exit(EXIT_CONFIG) from None
        from app.scripted.scenarios import ScenarioError, load_scenario

        try:
            load_scenario(scenario)
        except ScenarioError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_CONFIG) from None
        faults = ServerFaults(
            fail_first_429=fail_first_429,
            fail_first_503=fail_first_503,
            bad_json_first=bad_json_first,
        )
        try:
            serve(scenario, host, port, faults=faults)
        except OSError as exc:
            typer.echo(f"error: cannot listen on {host}:{port}: {exc}", err=True)
            raise typer.Exit(EXIT_CONFIG) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
