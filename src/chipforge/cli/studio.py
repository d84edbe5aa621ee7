"""`chipforge studio`: the local web app over the pipeline (extra `studio`; docs/studio.md)."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chipforge.cli import app
from chipforge.errors import ChipforgeError

LOCAL = "127.0.0.1"


@app.command()
def studio(
    host: Annotated[
        str,
        typer.Option("--host", help="address to listen on; anything but 127.0.0.1 warns"),
    ] = LOCAL,
    port: Annotated[int, typer.Option("--port", help="port; 0 picks a free one")] = 0,
    scenario: Annotated[
        Path | None,
        typer.Option("--scenario", help="build-or-buy scenario TOML for the Decision page"),
    ] = None,
    space: Annotated[
        Path | None, typer.Option("--space", help="sweep space TOML for the Sweep page")
    ] = None,
    store: Annotated[
        Path | None, typer.Option("--store", help="result folder of that sweep")
    ] = None,
) -> None:
    """Start the studio (Chip, Run, Cluster, Silicon, Site, Decision, Sweep pages); print its
    URL."""
    try:
        from chipforge.studio.server import make_server
    except ImportError as e:
        raise ChipforgeError(
            f"the studio needs the `studio` extra ({e.name} is missing): "
            "pip install 'chipforge[studio]'"
        ) from None
    if scenario is not None:
        from chipforge.decide import load_scenario

        load_scenario(scenario)  # a bad file is one line now, not a page error later
        scenario = scenario.resolve()
    if (space is None) != (store is None):
        raise ChipforgeError("`--space` and `--store` go together: the sweep's space and results")
    if space is not None:
        from chipforge.explore import Store, load_space

        load_space(space)
        Store(store).read()  # a missing or empty store is one line now
        space, store = space.resolve(), store.resolve()
    if not 0 <= port <= 65535:
        raise ChipforgeError(f"`--port` must be 0..65535, not {port}")
    err = Console(stderr=True, soft_wrap=True)
    if host != LOCAL:
        err.print(
            f"warning: --host {host}: the studio is reachable from other machines; anyone who "
            "learns its URL (with the token) can use it",
            style="yellow",
            markup=False,
        )
    said = io.StringIO()  # werkzeug prints its reason and exits on a bind error: held back
    try:
        with contextlib.redirect_stderr(said):
            srv, url = make_server(host, port, scenario=scenario, sweep=(space, store))
    except (OSError, SystemExit) as e:
        why = str(e) if isinstance(e, OSError) else " ".join(said.getvalue().split())[:200]
        raise ChipforgeError(
            f"`--host`/`--port`: cannot listen on {host}:{port}"
            + (f" ({why})" if why else "")
            + "; give an address of this machine (default 127.0.0.1) and a free port (0: any)"
        ) from None
    sys.stderr.write(said.getvalue())
    print(f"chipforge studio: {url}", flush=True)
    err.print("press Ctrl+C to stop", markup=False)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
