"""Serving the studio: 127.0.0.1 on a free port by default, behind a random token.

Every route lives under `/<token>/` (the URL printed at start); a request for any other path is
refused with 403 before Dash sees it. Listening on another address takes an explicit `--host`
and prints a warning: anyone who can reach the port and learns the URL can use the studio.
"""

from __future__ import annotations

import hmac
import secrets

from chipforge.studio import app as pages

MAX_REQUEST_BYTES = 12 * 2**20  # an upload is capped at 8 MiB of text; base64 adds a third


def new_token() -> str:
    return secrets.token_urlsafe(18)


def make_app(token: str, scenario=None, sweep=(None, None)):
    """The Dash app, every route under `/<token>/`; `scenario`: the Decision page's TOML;
    `sweep`: the Sweep page's (space TOML, store folder)."""
    from dash import Dash
    from flask import abort, request

    prefix = f"/{token}/"
    app = Dash(
        "chipforge.studio",
        url_base_pathname=prefix,
        title="chipforge studio",
        serve_locally=True,
        update_title=None,
    )
    app.layout = lambda: pages.layout(pages.referrer_query())
    pages.register(app, scenario, sweep)
    server = app.server
    server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    @server.before_request
    def _token_required():
        given = request.path[1 : len(prefix) - 1] if request.path.startswith("/") else ""
        ok = request.path.startswith(prefix) and hmac.compare_digest(given, token)
        if not ok:
            abort(403)

    return app


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    scenario=None,
    sweep=(None, None),
):
    """(werkzeug server, URL): bound now (port 0: a free one), not yet serving."""
    import logging

    from werkzeug.serving import make_server as _make

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    token = token or new_token()
    app = make_app(token, scenario, sweep)
    srv = _make(host, port, app.server, threaded=True)
    shown = f"[{host}]" if ":" in host else host
    return srv, f"http://{shown}:{srv.server_port}/{token}/"
