"""Handlers: Python functions the host application runs for received webhooks.

A host application registers them with a decorator, in modules listed in
``WEBHOOKS_HANDLERS`` (comma-separated, imported when the app starts)::

    from webhooks import hooks

    @hooks.handler("github", "push")
    def deploy_on_push(event: hooks.Event) -> None:
        if event.payload["ref"] == "refs/heads/main":
            ...

A source's route ``{"action": "handler", "handler": "<name>"}`` then runs the
handler of that name (by default the function's dotted path, here
``myapp.hooks.deploy_on_push``), or ``"*"`` runs every handler registered for
the event's provider and type. A handler that raises marks the request
failed, keeps the traceback, and the request is retried with backoff.

The registry is per process and filled at import time, which is why the
modules are imported by :func:`init_app` before any request is processed.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any

from flask import Flask

from webhooks import providers

#: A route naming this runs every handler that accepts the event.
EVERY_HANDLER = "*"


@dataclass(frozen=True)
class Event:
    """What a handler receives: one accepted provider request, parsed.

    ``payload`` is the parsed JSON or form body (``None`` for other content
    types; ``body`` has the raw bytes). ``headers`` are as received, with the
    credentials masked. ``id`` is the hub's inbound request id: stable across
    retries and reprocessing, so a handler can use it to skip work it has
    done before. ``delivery_id`` is the provider's own id, when it sends one.
    """

    id: int
    provider: str
    event_type: str | None
    payload: Any
    headers: dict[str, str]
    body: bytes = field(repr=False)
    source: str
    tenant: str
    delivery_id: str | None
    received_at: datetime
    attempt: int


@dataclass(frozen=True)
class Handler:
    """A registered function and the events it accepts."""

    name: str
    provider: str
    event_type: str
    function: Callable[[Event], Any]

    def accepts(self, provider: str, event_type: str | None) -> bool:
        """True for the provider (or any, with ``*``) and an event type matching the pattern.

        Patterns use shell wildcards (``pull_request*``); an event without a
        type only matches ``*``.
        """
        if self.provider not in (EVERY_HANDLER, provider):
            return False
        if event_type is None:
            return self.event_type == EVERY_HANDLER
        return fnmatch.fnmatchcase(event_type, self.event_type)


_registry: dict[str, Handler] = {}


def handler(provider: str = "*", event_type: str = "*", *, name: str | None = None):
    """Register the decorated function for events of ``provider`` and ``event_type``.

    ``provider`` is a preset name (``github``, ``stripe``...) or ``*``;
    ``event_type`` is the provider's event type or a pattern. ``name`` is
    what routes refer to; it defaults to ``module.function``. Registering a
    different function under a name that is taken raises :exc:`ValueError`,
    so two modules cannot silently replace each other's handler.
    """
    if provider != EVERY_HANDLER and provider not in providers.PRESETS:
        raise ValueError(f"unknown provider {provider!r}; one of {', '.join(providers.PRESETS)} or '*'")
    if not isinstance(event_type, str) or not event_type:
        raise ValueError("event_type must be an event type or a pattern such as '*'")

    def register(function: Callable[[Event], Any]) -> Callable[[Event], Any]:
        handler_name = name or f"{function.__module__}.{function.__qualname__}"
        if handler_name == EVERY_HANDLER:
            raise ValueError("'*' is reserved for routes that run every handler")
        known = _registry.get(handler_name)
        if known is not None and known.function is not function:
            raise ValueError(f"a handler named {handler_name!r} is registered already")
        _registry[handler_name] = Handler(handler_name, provider, event_type, function)
        return function

    return register


def get(name: str) -> Handler | None:
    """The handler registered under ``name``."""
    return _registry.get(name)


def names() -> list[str]:
    """Every registered name, sorted, for validation messages and the dashboard."""
    return sorted(_registry)


def selected(name: str, provider: str, event_type: str | None) -> list[Handler]:
    """The handlers a route naming ``name`` runs for this event, in registration order.

    A named handler that does not accept the event's provider and type is
    not run: its declaration is part of the route's condition.
    """
    if name == EVERY_HANDLER:
        candidates = list(_registry.values())
    else:
        candidates = [_registry[name]] if name in _registry else []
    return [item for item in candidates if item.accepts(provider, event_type)]


def unregister(name: str) -> None:
    """Forget a handler; for tests and for reloading code in a shell."""
    _registry.pop(name, None)


def load(modules: str) -> list[str]:
    """Import the comma-separated ``modules`` so their handlers register; return their names.

    An import error stops the start with the module's name: a handler that
    silently failed to load would mark every request it should handle failed.
    """
    loaded = []
    for module in (part.strip() for part in modules.split(",")):
        if not module:
            continue
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise RuntimeError(f"WEBHOOKS_HANDLERS: cannot import {module!r}: {exc}") from exc
        loaded.append(module)
    return loaded


def init_app(app: Flask) -> None:
    """Import the modules named by the ``HANDLERS`` setting (``WEBHOOKS_HANDLERS``)."""
    load(str(app.config.get("HANDLERS") or ""))
