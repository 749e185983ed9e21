"""Publishing: an event comes in, deliveries go out.

``publish`` is the Python API host applications call; the HTTP API calls
``accept``, the same code without the ORM session. It validates the event against the tenant's catalog, honours
idempotency keys, and creates one pending delivery per endpoint that
subscribes to the type and whose filter matches, all in one transaction.

Publishing is the hub's hottest write, so it avoids the ORM: what it needs to
know about a tenant (strict mode, catalog validators, routes) is kept per
process and checked, by the write itself, against a fingerprint of the rows
it came from; the rows go in on the driver's own connection, with
one plain statement per table. Routing is decided before the first
``INSERT``, because on SQLite that statement takes the database's single
write lock until the commit; the answer is built after it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import json
import re
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from json.encoder import encode_basestring as quote
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from webhooks import catalog
from webhooks import filters
from webhooks import groupcommit
from webhooks.db import UTCDateTime
from webhooks.db import db
from webhooks.db import DriverStatement
from webhooks.db import driver_errors
from webhooks.db import now_utc
from webhooks.errors import ApiError
from webhooks.models import PENDING
from webhooks.models import Delivery
from webhooks.models import Endpoint
from webhooks.models import Event
from webhooks.models import Tenant
from webhooks.models import new_event_uid

EVENT_TYPE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}\Z")  # \Z: "$" also matches before a final newline


@dataclass(frozen=True)
class Published:
    """A stored event and how many deliveries it made; ``created`` is False for an idempotent repeat."""

    id: int
    uid: str
    type: str
    created_at: datetime
    deliveries: int
    created: bool


@dataclass(frozen=True)
class Route:
    """What routing needs of an enabled endpoint: no URL, no secrets."""

    endpoint_id: int
    patterns: tuple[str, ...]
    rules: tuple[str, ...]
    match: str


@dataclass(frozen=True)
class Profile:
    """What publishing needs of a tenant: strict mode, the catalog (type name to
    schema validator, or None) and the routes of its enabled endpoints."""

    strict: bool
    validators: dict[str, Any]
    routes: tuple[Route, ...]


def subscribes(patterns: Sequence[str], event_type: str) -> bool:
    """True when an endpoint with these type patterns wants ``event_type``.

    No patterns means every type; ``order.*`` matches ``order.created`` and
    ``order.item.added``; ``*`` matches everything.
    """
    return not patterns or any(fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns)


def filter_context(event_type: str, payload: Any, *, uid: str, created_at) -> dict:
    """What filter rules see for an outbound event: the payload plus ``event``."""
    event = {"id": uid, "type": event_type, "created_at": created_at.isoformat()}
    return filters.build_context(payload, event=event)


def publish(tenant: Tenant, type: str, payload: Any, idempotency_key: str | None = None) -> Published:
    """Publish one event for ``tenant`` and commit.

    :param tenant: The tenant the event belongs to.
    :param type: The event type, such as ``order.created``.
    :param payload: Any JSON value; usually an object.
    :param idempotency_key: Repeating a key within 24 h returns the first event and creates nothing.
    :raises ApiError: 413 for a payload over ``WEBHOOKS_MAX_EVENT_BYTES``, 422 for an invalid type or payload.
    """
    item = {"type": type, "payload": payload, "idempotency_key": idempotency_key}
    return publish_many(tenant, [item], bulk=False)[0]


def publish_many(tenant: Tenant, items: Sequence[dict], *, bulk: bool = True) -> list[Published]:
    """Publish a batch in the session's transaction and commit the session: all of it is stored, or none of it.

    Errors in a ``bulk`` request name the item, as in ``[3].type``. The rows
    go in on the session's own connection, after what the caller's session
    has pending: an endpoint added there gets the event, and on SQLite the
    write never waits for a lock the session holds.
    """
    db.session.flush()
    return _publish(tenant.id, items, bulk, _in_session)


def accept(tenant_id: int, items: Sequence[dict], *, bulk: bool) -> list[Published]:
    """Publish a request's events outside the session: the JSON API's :func:`publish_many`.

    No ORM session is involved while the tenant's profile is unchanged: its
    bookkeeping (begin, execute, commit) cost more than the statements
    themselves (docs/benchmarks.md, finding 13). A single event shares its
    transaction with the other requests of the moment
    (:mod:`webhooks.groupcommit`); a bulk request is a transaction's worth on
    its own, and on PostgreSQL two of them write side by side.
    """
    return _publish(tenant_id, items, bulk, groupcommit.run_unshared if bulk else groupcommit.run)


def _publish(tenant_id: int, items: Sequence[dict], bulk: bool, run: Callable[[Write], Stored | None]) -> list[Published]:
    """Check, route and store ``items`` with ``run``, which commits the write or rolls it back.

    Checks and routing use the tenant's profile as this process last saw it;
    the write reads the profile's fingerprint first, on its own connection,
    and writes nothing when it changed (an endpoint edited by another
    process, say): the items are checked and routed again with a fresh
    profile. So a change committed before a publish began applies to it.

    Two requests racing with the same idempotency key meet the unique index;
    the loser rolls back and, on its second pass, finds the winner's event.
    """
    now = now_utc()
    limit = current_app.config["MAX_EVENT_BYTES"]
    window = now - timedelta(hours=current_app.config["IDEMPOTENCY_HOURS"])
    dialect = db.engine.dialect
    fingerprint, profile = tenant_profile(tenant_id)
    conflicted = False
    while True:
        checked = [check_item(profile, item, index if bulk else None, limit) for index, item in enumerate(items)]
        targets = route(profile.routes, checked, now)
        try:
            stored = run(functools.partial(_store, dialect, tenant_id, fingerprint, checked, targets, now, window))
        except IntegrityError:
            # Routed again too: an endpoint deleted meanwhile fails its foreign key.
            if conflicted:
                raise
            conflicted, stored = True, None
        if stored is not None:
            return stored.published(now)
        fingerprint, profile = tenant_profile(tenant_id, fresh=True)


def _in_session(write: Write) -> Stored | None:
    """Run ``write`` on the session's connection and commit the session, as the Python API promises."""
    try:
        stored = write(db.session.connection().connection)
    except Exception:
        db.session.rollback()  # a failed statement the session does not know of left the transaction unusable
        raise
    if stored is not None:
        db.session.commit()
    return stored


def check_item(profile: Profile, item: Any, index: int | None, limit: int) -> dict:
    """Validate one event of a request; errors name the field (``[3].type`` in a batch).

    The returned item carries the payload's compact JSON text, measured
    against ``limit`` (bytes) and stored as it is.
    """
    where = "" if index is None else f"[{index}]."
    if not isinstance(item, dict):
        raise ApiError(422, "each event must be a JSON object", field=where.rstrip(".") or None)
    event_type, payload, key = item.get("type"), item.get("payload"), item.get("idempotency_key")
    if not isinstance(event_type, str) or not EVENT_TYPE.match(event_type):
        raise ApiError(422, "type must be a name like 'order.created' (letters, digits, _ . : -)", field=f"{where}type")
    if "payload" not in item:
        raise ApiError(422, "payload is required", field=f"{where}payload")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 200 or "\x00" in key):
        raise ApiError(422, "idempotency_key must be a string of 1 to 200 characters, without NUL", field=f"{where}idempotency_key")
    try:
        stored = COMPACT_JSON.encode(payload)
    except (TypeError, ValueError) as exc:
        raise ApiError(422, f"payload is not JSON: {exc}", field=f"{where}payload") from None
    if len(stored) > limit:
        raise ApiError(413, f"payload is {len(stored)} bytes; the limit is {limit}")
    catalog.check_event(profile.validators, event_type, payload, strict=profile.strict, field=f"{where}payload")
    return {"type": event_type, "payload": payload, "idempotency_key": key, "json": stored, "uid": new_event_uid()}


# json.dumps with options builds an encoder per call; a batch checks a thousand payloads.
COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def route(routes: Sequence[Route], items: Sequence[dict], now: datetime) -> list[Sequence[int]]:
    """The endpoint ids each item goes to, decided without touching the database.

    Subscriptions are matched once per event type of the request, and the
    items of a type no filter looks at share one answer; the filter context is
    built only for events that meet an endpoint with rules.
    """
    created_at = now.isoformat()
    subscribed: dict[str, tuple[list[Route], tuple[int, ...] | None]] = {}
    targets: list[Sequence[int]] = []
    for item in items:
        event_type = item["type"]
        known = subscribed.get(event_type)
        if known is None:
            candidates = [r for r in routes if subscribes(r.patterns, event_type)]
            unfiltered = None if any(r.rules for r in candidates) else tuple(r.endpoint_id for r in candidates)
            known = subscribed[event_type] = (candidates, unfiltered)
        candidates, unfiltered = known
        if unfiltered is not None:
            targets.append(unfiltered)
            continue
        context = None
        chosen = []
        for candidate in candidates:
            if candidate.rules:
                if context is None:
                    event = {"id": item["uid"], "type": event_type, "created_at": created_at}
                    context = filters.build_context(item["payload"], event=event)
                if not filters.evaluate_rules(candidate.rules, candidate.match, context).matched:
                    continue
            chosen.append(candidate.endpoint_id)
        targets.append(chosen)
    return targets


def tenant_profile(tenant_id: int, *, fresh: bool = False) -> tuple[tuple, Profile]:
    """The tenant's profile with the fingerprint of the rows it was read from.

    The profile is kept per process and read again when ``fresh`` is asked
    for, which :func:`_publish` does when the fingerprint it checks inside
    its write no longer matches: so a change made by any process applies to
    the next publish, as when every publish read the endpoints itself.
    """
    cache = current_app.extensions.setdefault("publishing.profiles", {})  # per app: tests reuse tenant ids
    entry = cache.get(tenant_id)
    if entry is None or fresh:
        connection = db.session.connection()
        with driver_errors(connection.dialect), contextlib.closing(connection.connection.cursor()) as cursor:
            fingerprint = _fingerprint(cursor, connection.dialect, tenant_id)
        profile = Profile(bool(fingerprint[-1]), catalog.validators(tenant_id), _load_routes(tenant_id))
        entry = cache[tenant_id] = (fingerprint, profile)
    return entry


def _fingerprint(cursor, dialect, tenant_id: int) -> tuple:
    """Row counts and latest ``updated_at`` of the tenant's endpoints and catalog, and its strict mode.

    Read with a DBAPI cursor wherever it is read, so that two readings compare equal.
    """
    return tuple(_statements(dialect).fingerprint.execute(cursor, {"tenant": tenant_id}).fetchone())


def _load_routes(tenant_id: int) -> tuple[Route, ...]:
    columns = (Endpoint.id, Endpoint.event_types, Endpoint.filter_rules, Endpoint.filter_match)
    rows = db.session.execute(select(*columns).where(Endpoint.tenant_id == tenant_id, Endpoint.enabled).order_by(Endpoint.id))
    return tuple(Route(id, tuple(types or ()), tuple(rules or ()), match) for id, types, rules, match in rows)


# Every change to an endpoint or a catalog entry sets its updated_at (the models'
# onupdate), and adding or deleting one changes the count.
FINGERPRINT = (
    "SELECT (SELECT count(*) FROM endpoints WHERE tenant_id = :tenant),"
    " (SELECT max(updated_at) FROM endpoints WHERE tenant_id = :tenant),"
    " (SELECT count(*) FROM event_types WHERE tenant_id = :tenant),"
    " (SELECT max(updated_at) FROM event_types WHERE tenant_id = :tenant),"
    " (SELECT strict_event_types FROM tenants WHERE id = :tenant)"
)


@dataclass(frozen=True)
class Stored:
    """What a batch did, kept as plain data until the commit: per item either the
    answer for the event found under its idempotency key, or the index of its
    new event in ``new_items`` (``repeat`` when an earlier item had its key)."""

    plan: list[tuple[str, Any]]
    new_items: list[dict]
    ids: list[int]
    targets: list[Sequence[int]]

    def published(self, now: datetime) -> list[Published]:
        results = []
        for kind, ref in self.plan:
            if kind == "existing":
                results.append(ref)
            else:
                item = self.new_items[ref]
                results.append(Published(self.ids[ref], item["uid"], item["type"], now, len(self.targets[ref]), created=kind == "new"))
        return results


# A write of :func:`_publish`: a function of a DBAPI connection that does not commit.
Write = Callable[[Any], "Stored | None"]


def _store(dialect, tenant_id: int, fingerprint: tuple, items: list[dict], targets: list[Sequence[int]],
           now: datetime, window: datetime, connection) -> Stored | None:
    """Write the events and their deliveries on a DBAPI ``connection``, which the caller commits.

    Writes nothing and returns None when the tenant's fingerprint is no
    longer ``fingerprint``: ``items`` were checked and routed by a profile
    that is out of date.
    """
    with driver_errors(dialect), contextlib.closing(connection.cursor()) as cursor:
        if _fingerprint(cursor, dialect, tenant_id) != fingerprint:
            return None
        return _write_rows(cursor, dialect, tenant_id, items, targets, now, window)


def _write_rows(cursor, dialect, tenant_id: int, items: list[dict], targets: list[Sequence[int]],
                now: datetime, window: datetime) -> Stored:
    keys = {item["idempotency_key"] for item in items if item["idempotency_key"]}
    existing = _existing_events(cursor, dialect, tenant_id, keys, window) if keys else {}
    fresh: list[int] = []  # indexes of the items stored as new events
    plan: list[tuple[str, Any]] = []  # per item: ("existing", Published) | ("new" | "repeat", index in fresh)
    row_of_key: dict[str, int] = {}
    for index, item in enumerate(items):
        key = item["idempotency_key"]
        if key in existing:
            plan.append(("existing", existing[key]))
        elif key and key in row_of_key:
            plan.append(("repeat", row_of_key[key]))  # the same key twice in one batch
        else:
            if key:
                row_of_key[key] = len(fresh)
            plan.append(("new", len(fresh)))
            fresh.append(index)
    new_items = [items[index] for index in fresh]
    new_targets = [targets[index] for index in fresh]
    ids: list[int] = []
    if new_items:
        insert = _insert_postgresql if dialect.name == "postgresql" else _insert_sqlite
        ids = insert(cursor, tenant_id, new_items, new_targets, _datetime_processor(dialect)(now))
    return Stored(plan, new_items, ids, new_targets)


def _insert_postgresql(cursor, tenant_id: int, items: list[dict], targets: list[Sequence[int]], now: Any) -> list[int]:
    """Insert the events and their deliveries; return the events' ids in the order of ``items``.

    One JSON document per table instead of arrays: psycopg escapes array
    elements in Python, one regex call per string. Each payload goes in as a
    JSON string of its text, since PostgreSQL's JSON functions refuse a
    \\u0000 inside a document they take apart (the json column keeps it).
    """
    rows = ",".join(json.dumps([item["uid"], item["type"], item["json"], item["idempotency_key"]]) for item in items)
    cursor.execute(INSERT_EVENTS_PG, {"rows": f"[{rows}]", "tenant_id": tenant_id, "now": now})
    id_of = {uid: id for id, uid in cursor.fetchall()}  # the order of RETURNING rows is not promised
    ids = [id_of[item["uid"]] for item in items]
    pairs = [(event_id, endpoint_id, item["type"]) for item, event_id, chosen in zip(items, ids, targets) for endpoint_id in chosen]
    if pairs:
        cursor.execute(INSERT_DELIVERIES_PG, {"rows": json.dumps(pairs), "tenant_id": tenant_id, "now": now})
    return ids


def _insert_sqlite(cursor, tenant_id: int, items: list[dict], targets: list[Sequence[int]], now: Any) -> list[int]:
    """Insert the events and their deliveries; return the events' ids in the order of ``items``.

    Each table's rows go in as one statement over a JSON array, both built
    before the first ``INSERT`` takes the write lock. An ``executemany`` would
    let go of the GIL around every row, and wait to get it back from whichever
    request thread of the process is busy meanwhile (up to the switch
    interval, 5 ms), all while every writer of every process waits for it.

    Without an explicit id SQLite gives a new row the largest rowid plus one,
    and the transaction holds the write lock from its first ``INSERT``: the
    events get consecutive ids ending at the last one, and a delivery names
    its event by its offset in ``items``.
    """
    events, deliveries = _sqlite_documents(items, targets)
    cursor.execute(INSERT_EVENTS_SQLITE, (events, tenant_id, now))
    last = cursor.lastrowid
    first = last - len(items) + 1
    if deliveries != "[]":
        cursor.execute(INSERT_DELIVERIES_SQLITE, (deliveries, tenant_id, now, first))
    return list(range(first, last + 1))


def _sqlite_documents(items: list[dict], targets: list[Sequence[int]]) -> tuple[str, str]:
    """The JSON arrays of event rows ``[uid, type, payload text, key]`` and of
    delivery rows ``[offset of the event, endpoint id, type]``.

    Written as text rather than as lists for ``json.dumps``: a batch would
    otherwise make four thousand short-lived lists, which the garbage
    collector walks and, when a collection catches them, promotes.
    """
    events = ",".join(
        f"[{quote(item['uid'])},{quote(item['type'])},{quote(item['json'])},{_json_or_null(item['idempotency_key'])}]" for item in items
    )
    deliveries = ",".join(
        f"[{offset},{endpoint_id},{quote(item['type'])}]"
        for offset, (item, chosen) in enumerate(zip(items, targets))
        for endpoint_id in chosen
    )
    return f"[{events}]", f"[{deliveries}]"


def _json_or_null(value: str | None) -> str:
    return "null" if value is None else quote(value)


@functools.cache
def _datetime_processor(dialect) -> Callable[[datetime], Any]:
    """What :class:`UTCDateTime` binds for a moment on this dialect (SQLite: text in UTC)."""
    return UTCDateTime().dialect_impl(dialect).bind_processor(dialect) or (lambda moment: moment)


@functools.cache
def _datetime_reader(dialect) -> Callable[[Any], datetime]:
    """How :class:`UTCDateTime` reads a stored moment back on this dialect, timezone-aware."""
    return UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)


# Plain statements: per-row bind processing through the ORM cost more than the
# inserts themselves (docs/benchmarks.md, finding 4). Column lists are those of
# models.Event and models.Delivery; the rest take their server defaults (NULL).
# ORDER BY key: rows go in in the order of the array (ordered endpoints deliver by id).
INSERT_EVENTS_SQLITE = (
    "INSERT INTO events (uid, tenant_id, type, payload, idempotency_key, created_at)"
    " SELECT json_extract(value, '$[0]'), ?2, json_extract(value, '$[1]'), json_extract(value, '$[2]'),"
    " json_extract(value, '$[3]'), ?3 FROM json_each(?1) ORDER BY key"
)
INSERT_DELIVERIES_SQLITE = (
    "INSERT INTO deliveries (tenant_id, event_id, endpoint_id, event_type, status, next_attempt_at, next_trigger,"
    " attempts, created_at, updated_at)"
    f" SELECT ?2, ?4 + json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), '{PENDING}',"
    " ?3, 'scheduled', 0, ?3, ?3 FROM json_each(?1) ORDER BY key"
)
# WITH ORDINALITY ... ORDER BY: ids follow the order of the request (ordered endpoints deliver by id).
INSERT_EVENTS_PG = (
    "INSERT INTO events (uid, tenant_id, type, payload, idempotency_key, created_at)"
    " SELECT u.row->>0, %(tenant_id)s, u.row->>1, CAST(u.row->>2 AS JSON), u.row->>3, %(now)s"
    " FROM json_array_elements(CAST(%(rows)s AS JSON)) WITH ORDINALITY AS u(row, n) ORDER BY u.n"
    " RETURNING id, uid"
)
INSERT_DELIVERIES_PG = (
    "INSERT INTO deliveries (tenant_id, event_id, endpoint_id, event_type, status, next_attempt_at, next_trigger,"
    " attempts, created_at, updated_at)"
    f" SELECT %(tenant_id)s, CAST(u.row->>0 AS BIGINT), CAST(u.row->>1 AS INTEGER), u.row->>2, '{PENDING}', %(now)s,"
    " 'scheduled', 0, %(now)s, %(now)s"
    " FROM json_array_elements(CAST(%(rows)s AS JSON)) WITH ORDINALITY AS u(row, n) ORDER BY u.n"
)
# The events under some idempotency keys, with how many deliveries each made;
# both forms look each key up in the (tenant_id, idempotency_key) index.
EXISTING_EVENTS = (
    "SELECT id, uid, type, created_at, idempotency_key,"
    " (SELECT count(*) FROM deliveries WHERE deliveries.event_id = events.id)"
    " FROM events WHERE tenant_id = :tenant AND idempotency_key {keys}"
)
# A list of keys: psycopg sends a Python list as an array; SQLite reads a JSON one.
KEYS_IN = {"postgresql": "= ANY(:keys)", "sqlite": "IN (SELECT value FROM json_each(:keys))"}
RELEASE_KEY = "UPDATE events SET idempotency_key = NULL WHERE id = :id"


@dataclass(frozen=True)
class Statements:
    fingerprint: DriverStatement
    existing_events: DriverStatement
    release_key: DriverStatement


@functools.cache
def _statements(dialect) -> Statements:
    return Statements(
        DriverStatement(FINGERPRINT, dialect),
        DriverStatement(EXISTING_EVENTS.format(keys=KEYS_IN[dialect.name]), dialect),
        DriverStatement(RELEASE_KEY, dialect),
    )


def _existing_events(cursor, dialect, tenant_id: int, keys: set[str], window: datetime) -> dict[str, Published]:
    """The answers for events already published under these keys since ``window``.

    A key older than the window is released (set to NULL on its old event), so
    the unique index admits the new event that reuses it.
    """
    listed = sorted(keys)
    statements = _statements(dialect)
    statements.existing_events.execute(cursor, {"tenant": tenant_id, "keys": listed if dialect.name == "postgresql" else json.dumps(listed)})
    read_moment = _datetime_reader(dialect)
    live = {}
    for id, uid, type, created_at, key, deliveries in cursor.fetchall():
        created_at = read_moment(created_at)
        if created_at >= window:
            live[key] = Published(id, uid, type, created_at, deliveries, created=False)
        else:
            statements.release_key.execute(cursor, {"id": id})
    return live


def direct_event(endpoint: Endpoint, event_type: str, payload: Any) -> Published:
    """An event delivered to one endpoint only (test events), bypassing subscriptions and filters."""
    now = now_utc()
    event = Event(tenant_id=endpoint.tenant_id, type=event_type, payload=payload, created_at=now)
    db.session.add(event)
    db.session.flush()
    db.session.add(
        Delivery(
            tenant_id=endpoint.tenant_id,
            event_id=event.id,
            endpoint_id=endpoint.id,
            event_type=event_type,
            next_attempt_at=now,
        )
    )
    db.session.commit()
    return Published(event.id, event.uid, event.type, event.created_at, 1, created=True)


def explain(event: Event) -> list[dict]:
    """Per endpoint of the tenant: would it get this event now, and which rule decided.

    Evaluated against the endpoints as they are now, which is what a person
    changing a filter wants to see.
    """
    context = filter_context(event.type, event.payload, uid=event.uid, created_at=event.created_at)
    endpoints = db.session.scalars(select(Endpoint).where(Endpoint.tenant_id == event.tenant_id).order_by(Endpoint.id))
    return [_explain_one(endpoint, event.type, context) for endpoint in endpoints]


def _explain_one(endpoint: Endpoint, event_type: str, context: dict) -> dict:
    subscribed = subscribes(endpoint.event_types or [], event_type)
    outcome = filters.evaluate_rules(endpoint.filter_rules or [], endpoint.filter_match, context)
    if not endpoint.enabled:
        reason = "endpoint is disabled"
    elif not subscribed:
        reason = f"not subscribed to {event_type}"
    elif outcome.decided_by is None:
        reason = "subscribed; no filter rules"
    else:
        rule = outcome.results[outcome.decided_by]
        verb = "matched" if rule.matched else "did not match"
        reason = f"rule {rule.index + 1} {verb}: {rule.rule}" + (f" ({rule.error})" if rule.error else "")
    return {
        "endpoint_id": endpoint.id,
        "url": endpoint.url,
        "matched": endpoint.enabled and subscribed and outcome.matched,
        "enabled": endpoint.enabled,
        "subscribed": subscribed,
        "filter": {
            "match": endpoint.filter_match,
            "matched": outcome.matched,
            "decided_by": outcome.decided_by,
            "rules": [{"rule": r.rule, "matched": r.matched, "error": r.error} for r in outcome.results],
        },
        "reason": reason,
    }


def recent_events(tenant_id: int, patterns: Sequence[str], limit: int = 100) -> list[Event]:
    """The tenant's latest events whose type matches any of ``patterns`` (all types when empty)."""
    query = select(Event).where(Event.tenant_id == tenant_id).order_by(Event.id.desc())
    exact = [p for p in patterns if not any(c in p for c in "*?[")]
    if patterns and len(exact) == len(patterns):
        return list(db.session.scalars(query.where(Event.type.in_(exact)).limit(limit)))
    if not patterns:
        return list(db.session.scalars(query.limit(limit)))
    # Wildcards: scan recent history in pages until enough match, bounded to keep previews fast.
    found: list[Event] = []
    for event in db.session.scalars(query.limit(limit * 20)):
        if subscribes(patterns, event.type):
            found.append(event)
            if len(found) == limit:
                break
    return found
