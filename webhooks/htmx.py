"""The only importer of ``htmx_flask``: page-or-fragment rendering and the Vary header.

htmx-flask is unmaintained (one release, 2022); fencing it into this module
keeps a switch to the maintained ``flask-htmx`` to one file.
"""

from __future__ import annotations

from flask import Flask
from flask import render_template
from htmx_flask import Htmx
from htmx_flask import make_response as htmx_response
from htmx_flask import request

htmx = Htmx()
# htmx stops polling an element whose answer has this status.
STOP_POLLING = 286


def is_htmx() -> bool:
    """True when htmx sent this request (``HX-Request: true``)."""
    return bool(request.htmx)


def render(page: str, fragment: str | None = None, *, trigger=None, status: int = 200, **context):
    """Render the full page, or only ``fragment`` for htmx requests.

    ``trigger`` becomes an ``HX-Trigger`` header (a toast message, a refresh).
    """
    template = fragment if fragment and is_htmx() and not request.htmx.boosted else page
    response = htmx_response(render_template(template, **context), status, trigger=trigger)
    return response


def client_redirect(url: str):
    """Send the whole browser to ``url`` (``HX-Redirect``): an htmx request whose
    session ended must not swap a login form into a table cell."""
    return htmx_response("", 200, redirect=url)


def init_app(app: Flask) -> None:
    htmx.init_app(app)

    @app.after_request
    def vary_on_htmx(response):
        # The same URL answers a page or a fragment; caches must keep them apart.
        # Only HTML comes in both shapes: JSON (the API, provider hooks) never
        # varies, and skipping it spares the hook path a header parse.
        if response.mimetype == "text/html":
            response.vary.add("HX-Request")
        return response
