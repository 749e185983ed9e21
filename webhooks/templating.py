"""Payload templates: tenant-written Jinja2 that turns an event into JSON.

A template such as ::

    {"order_id": {{ order.id | tojson }}, "total": {{ order.total }},
     "at": {{ event.created_at | tojson }}}

is rendered once per delivery and its output is sent as the request body, so
it must be valid JSON. The text comes from tenants, the values from the
outside world, and rendering happens inside the worker that sends everybody's
webhooks. So a template is untrusted code and is held to three promises: it
cannot reach Python internals, it cannot run for longer than a deadline, and
it cannot build more than a size allowance, whatever it does. Breaking any of
them is a :class:`TemplateError` (with the template line where there is
one), never a hang and never a ``MemoryError``.

Reaching internals. Templates run in Jinja's
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (no ``_`` attributes,
no mutating the payload), tightened: an unsafe attribute raises at once
instead of quietly becoming undefined; ``str.format``/``format_map`` and
``%``-formatting are refused (format specs can reach attributes and pad to any
width; ``~`` and ``tojson`` do the job); methods of strings, numbers, lists
and dicts are allow-listed (``"".ljust(10**9)`` or ``(1).to_bytes(10**9)``
would allocate before any check could run); the globals are just ``range``
(no ``cycler``, ``joiner``, ``namespace``, ``lipsum``, ``dict``); the filters
are the JSON-relevant ones (no ``format``, ``center``, ``indent``,
``wordwrap``, ``batch``, ``slice``, ``urlize``... which pad, multiply or
format HTML).

Bounding time. Three mechanisms were weighed:

(a) Render with ``Template.generate()`` and check the clock between output
    chunks. Cheap, but a loop that writes nothing (``{% for a in range(100000)
    %}{% for b in range(100000) %}{% endfor %}{% endfor %}``) never yields, so
    it is never checked.
(b) Check the clock from inside the template: in the sandbox's ``call`` hook,
    in every filter, and once per iteration of every ``{% for %}`` loop.
(c) Render in a thread and inject an exception with
    ``ctypes.pythonapi.PyThreadState_SetAsyncExc``. The exception is only
    delivered between bytecodes, so one long C call (``2 ** (10**9)``, a huge
    ``str.join``) is not interrupted at all; when the injection lands in a
    ``finally`` or while a lock is held it corrupts state; and a thread that
    ignores it keeps burning CPU after the caller gave up.

Only (b) sees every way a template can spend time, so that is the one used,
with (a) on top for output. Loops are reached by rewriting the template's
syntax tree before code generation (through the documented
``Environment.code_generator_class`` hook): each ``{% for %}`` iterates
through :meth:`_PayloadEnvironment.guard_iter`, which checks the deadline per
item, so the nested loop above, and loops over large payload lists, stop on
time. What runs between two checks is one built-in operation on data that the
size allowance below has already bounded, so the deadline is overshot by at
most the time of one such step.

Bounding size. The output is counted in UTF-8 bytes while it is generated
and rendering stops as soon as it passes ``max_bytes``. Output is not the
only place memory goes: ``{% set %}`` blocks and macros buffer text, and
``"a" * 10**9``, ``s ~ s``, ``join``, ``replace`` or ``tojson`` of a list
that holds the same big string many times build values in one C call.
Each of those charges what it is about to build against a second allowance
of ``max_bytes`` per render (characters for text, items for lists), before
building it; memory use is a small multiple of that (object overhead is not
counted). Integers are capped at :data:`MAX_INT_BITS`, checked before ``*``
and ``**`` run.

Missing values. ``order.coupon`` of a payload without a coupon is
undefined rather than an error (Jinja's ``ChainableUndefined``: optional
fields are normal in webhook payloads, and ``StrictUndefined`` would make
every template defensive). ``| tojson`` writes it as ``null``; as text it is
empty, so ``"total": {{ order.total }}`` with no total fails JSON validation
and says where. Outside strings, ``{{ value }}`` writes any non-string as
JSON (``null``, ``true``, ``[1,2]``) instead of Python's ``None`` and
``['a']``, and ``~`` and ``| string`` do the same.
"""

from __future__ import annotations

import functools
import json
import time
import traceback
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import MappingView
from collections.abc import Set
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from typing import Any
from typing import NoReturn

from jinja2 import ChainableUndefined
from jinja2 import Template
from jinja2 import Undefined
from jinja2 import exceptions as jinja_exceptions
from jinja2 import nodes
from jinja2 import pass_environment
from jinja2.compiler import CodeGenerator
from jinja2.filters import FILTERS
from jinja2.filters import make_attrgetter
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_OUTPUT_BYTES = 10 * 1024 * 1024
DEFAULT_TIMEOUT = 1.0
#: Largest integer a template may compute. Far above any id or amount, far
#: below what makes arithmetic slow (Python will not even print more than
#: 4300 digits).
MAX_INT_BITS = 1 << 16

_TEMPLATE_FILENAME = "<template>"
_COMPILE_CACHE_SIZE = 256

_DATA_TYPES = (str, int, float, list, tuple, dict)
_SAFE_METHODS = frozenset(
    {
        # str: each result is at most as long as the string (or a list of its parts).
        "capitalize", "casefold", "count", "endswith", "find", "index", "isalnum",
        "isalpha", "isdecimal", "isdigit", "islower", "isnumeric", "isspace",
        "istitle", "isupper", "lower", "lstrip", "partition", "removeprefix",
        "removesuffix", "rfind", "rindex", "rpartition", "rsplit", "rstrip",
        "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper",
        # dict (list and tuple: count, index)
        "get", "items", "keys", "values",
    }
)  # fmt: skip
#: Names that only matter to escape gadgets: refused as attributes of
#: anything, so probing fails loudly instead of rendering null.
_INTROSPECTION_NAMES = frozenset(
    {
        "mro", "func_globals", "func_code", "func_closure", "gi_frame", "gi_code",
        "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code",
        "ag_await", "f_globals", "f_locals", "f_builtins", "f_back", "tb_frame",
    }
)  # fmt: skip
_PLAIN_FILTERS = (
    "abs", "attr", "count", "d", "default", "dictsort", "first", "float",
    "groupby", "int", "items", "last", "length", "list", "map", "max", "min",
    "reject", "rejectattr", "reverse", "round", "select", "selectattr", "sort",
    "unique",
)  # fmt: skip
_TEXT_FILTERS = ("capitalize", "lower", "title", "trim", "upper", "wordcount")
_SEQUENCES = (str, list, tuple)
_JSON_CONTAINERS = (dict, list)


class TemplateError(ValueError):
    """A payload template that cannot be compiled or rendered.

    ``message`` says what went wrong; ``line`` is the 1-based template line,
    or None when the problem is not at one place in the template (the output
    is not JSON, or too large). ``str()`` gives both, ready for a form.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


# -- Budget --------------------------------------------------------------------


class _Budget:
    """The deadline and the allowance for built values of one render.

    It lives in a context variable, not on the template or environment: one
    compiled template renders in many threads at once, each with its own
    budget, and the hooks that check it (filters, sandbox callbacks) are
    shared by all of them.
    """

    def __init__(self, timeout: float, max_bytes: int, context: Mapping[str, Any] | None = None) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.max_bytes = max_bytes
        self.built = 0
        self._trusted = {id(value) for value in (context or {}).values() if isinstance(value, _JSON_CONTAINERS)}

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateError(f"rendering took longer than {self.timeout:g} s")

    def charge(self, size: int) -> None:
        """Account for a value about to be built, before building it."""
        self.built += size
        if self.built > self.max_bytes:
            raise TemplateError(
                f"template builds too much intermediate data (over {self.max_bytes} characters or items)"
            )
        self.tick()

    def looked_up(self, container: Any, value: Any) -> Any:
        """Note that ``value`` was read out of ``container``; return it."""
        if id(container) in self._trusted and isinstance(value, _JSON_CONTAINERS):
            self._trusted.add(id(value))
        return value

    def trusts(self, value: Any) -> bool:
        """Whether ``value`` is a list or dict of the render context itself
        (a context value, or read out of one by attribute, index or loop).

        Such data came from a parsed payload: its JSON is as big as that
        payload was, and the immutable sandbox cannot change it. Lists the
        template built itself may hold one big value many times. The ids stay
        valid because the context keeps those objects alive for the render.
        """
        return id(value) in self._trusted


_BUDGET: ContextVar[_Budget] = ContextVar("payload_template_budget")


@contextmanager
def _bounded(timeout: float, max_bytes: int, context: Mapping[str, Any] | None = None) -> Iterator[_Budget]:
    token = _BUDGET.set(_Budget(timeout, max_bytes, context))
    try:
        yield _BUDGET.get()
    finally:
        _BUDGET.reset(token)


def _guard_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _BUDGET.get()
    for item in iterable:
        budget.tick()
        yield budget.looked_up(iterable, item)


# -- JSON and text -------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Undefined):
        return None
    if isinstance(value, (Iterator, MappingView, Set, range)):
        return list(value)
    if callable(value):
        # Usually order.items meaning the key but finding dict.items.
        name = getattr(value, "__name__", "?")
        raise TypeError(f"{name!r} is a method, not data; for a key named {name!r} write x[{name!r}]")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# Not Jinja's tojson: that one escapes < > & ' as \u003c... so the JSON can
# sit in an HTML <script>. These payloads go to machines, which parse either
# form to the same value, so plain JSON is smaller and readable in delivery
# logs. ensure_ascii=False for the same reason: the body is sent as UTF-8.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_default
)


def _dump(value: Any) -> str:
    """Compact JSON of ``value``, charged to the render budget as it grows.

    A list the template built may hold one big string ten thousand times, and
    ``json.dumps`` would build gigabytes of it in one C call before anything
    could stop it; such values go through the incremental encoder, which is
    charged chunk by chunk (about 7 MB/s). Scalars and the payload's own
    lists and dicts (see :meth:`_Budget.trusts`) cannot blow up that way and
    take the C encoder (about 40 MB/s), so ``{{ payload | tojson }}`` of a
    large payload stays cheap.
    """
    budget = _BUDGET.get()
    if value is None or isinstance(value, (str, int, float)) or budget.trusts(value):
        text = _ENCODER.encode(value)
        budget.charge(len(text))
        return text
    parts = []
    for part in _ENCODER.iterencode(value):
        budget.charge(len(part))
        parts.append(part)
    return "".join(parts)


def _text(value: Any) -> str:
    """How a value reads as text: strings as they are, missing values as
    nothing, anything else as JSON (``null``, ``true``, ``[1,"a"]``).

    Used for ``{{ value }}`` output, ``~`` and the text filters, so that
    ``str()`` of a list never runs unbounded inside C.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, Undefined):
        return ""
    return _dump(value)


# -- Filters -------------------------------------------------------------------


def _ticking(filter_: Any) -> Any:
    """Check the deadline whenever ``filter_`` runs and for every item it
    yields, so long chains like ``items | map(...) | select(...)`` stop on
    time too. ``functools.wraps`` keeps Jinja's ``pass_context`` markers.
    """

    @functools.wraps(filter_)
    def ticking(*args: Any, **kwargs: Any) -> Any:
        _BUDGET.get().tick()
        result = filter_(*args, **kwargs)
        return _guard_iter(result) if isinstance(result, Iterator) else result

    return ticking


def _on_text(filter_: Any) -> Any:
    @functools.wraps(filter_)
    def on_text(value: Any, *args: Any, **kwargs: Any) -> Any:
        return filter_(_text(value), *args, **kwargs)

    return on_text


@pass_environment
def _join(environment: Any, value: Iterable[Any], d: Any = "", attribute: Any = None) -> str:
    """``join``, charging each part before the whole is built."""
    if attribute is not None:
        value = map(make_attrgetter(environment, attribute), value)
    separator = _text(d)
    budget = _BUDGET.get()
    parts = []
    for item in value:
        part = _text(item)
        budget.charge(len(part) + len(separator))
        parts.append(part)
    return separator.join(parts)


def _replace(s: Any, old: Any, new: Any, count: int | None = None) -> str:
    """``replace``, charging the result size (known in advance) first."""
    s, old, new = _text(s), _text(old), _text(new)
    limit = -1 if count is None else count
    hits = s.count(old) if old else len(s) + 1
    if limit >= 0:
        hits = min(hits, limit)
    _BUDGET.get().charge(len(s) + hits * max(len(new) - len(old), 0))
    return s.replace(old, new, limit)


@pass_environment
def _truncate(environment: Any, s: Any, *args: Any, **kwargs: Any) -> str:
    return FILTERS["truncate"](environment, _text(s), *args, **kwargs)


@pass_environment
def _sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """``sum`` of numbers only: summing lists with ``start=[]`` is quadratic."""
    if not isinstance(start, (int, float)):
        raise jinja_exceptions.SecurityError("sum() adds numbers only")
    return FILTERS["sum"](environment, iterable, attribute, start)


def _filters() -> dict[str, Any]:
    table = {name: FILTERS[name] for name in _PLAIN_FILTERS}
    table.update((name, _on_text(FILTERS[name])) for name in _TEXT_FILTERS)
    table.update(join=_join, replace=_replace, string=_text, sum=_sum, tojson=_dump, truncate=_truncate)
    return {name: _ticking(filter_) for name, filter_ in table.items()}


# -- Operators -----------------------------------------------------------------


def _check_int_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise jinja_exceptions.SecurityError(f"number too large (over {MAX_INT_BITS} bits)")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse or charge an operation before it runs; after is too late."""
    if operator == "%" and isinstance(left, str):
        raise jinja_exceptions.SecurityError("%-formatting is not available; join strings with ~")
    if operator == "**" and isinstance(left, int) and isinstance(right, int):
        if abs(left) > 1 and right > 0:
            _check_int_bits(abs(left).bit_length() * right)
    elif operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            _check_int_bits(left.bit_length() + right.bit_length())
        elif isinstance(left, _SEQUENCES) and isinstance(right, int):
            _BUDGET.get().charge(len(left) * max(right, 0))
        elif isinstance(right, _SEQUENCES) and isinstance(left, int):
            _BUDGET.get().charge(len(right) * max(left, 0))
    elif operator == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        _BUDGET.get().charge(len(left) + len(right))


# -- Environment ---------------------------------------------------------------


def _environment_call(name: str, *args: nodes.Expr) -> nodes.Call:
    call = nodes.Call(nodes.EnvironmentAttribute(name), list(args), [], None, None)
    return call.set_lineno(args[0].lineno)


class _Guards(NodeTransformer):
    """Routes every loop and every ``~`` through the render budget."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        node = self.generic_visit(node)
        node.iter = _environment_call("guard_iter", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Call:
        return _environment_call("join_text", *self.generic_visit(node).nodes)


class _GuardedCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Any = None) -> None:
        super().visit_Template(_Guards().visit(node), frame)


class _PayloadEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox for payload templates; see the module docstring."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(autoescape=False, undefined=ChainableUndefined, finalize=_text)
        self.globals = {"range": self.globals["range"]}
        self.filters = _filters()

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """Jinja's rules, and methods of plain data only from the allow-list."""
        if not super().is_safe_attribute(obj, attr, value):
            return False
        return attr in _SAFE_METHODS or not (callable(value) and isinstance(obj, _DATA_TYPES))

    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute in _INTROSPECTION_NAMES:
            raise jinja_exceptions.SecurityError(f"access to attribute {attribute!r} is not allowed")
        return _BUDGET.get().looked_up(obj, super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        return _BUDGET.get().looked_up(obj, super().getitem(obj, argument))

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        raise jinja_exceptions.SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )

    def wrap_str_format(self, value: Any) -> None:
        if super().wrap_str_format(value) is not None:
            raise jinja_exceptions.SecurityError("str.format is not available; join strings with ~")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _BUDGET.get().tick()
        return super().call(context, obj, *args, **kwargs)

    def concat(self, parts: Iterable[str]) -> str:  # type: ignore[override]
        """Join buffered output (``{% set %}`` blocks, macros), charged."""
        parts = list(parts)
        _BUDGET.get().charge(sum(map(len, parts)))
        return "".join(parts)

    def join_text(self, *parts: Any) -> str:
        return self.concat([_text(part) for part in parts])

    guard_iter = staticmethod(_guard_iter)


_ENVIRONMENT = _PayloadEnvironment()


# -- Errors --------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (TemplateError, jinja_exceptions.TemplateError)) and exc.message:
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _template_line(tb: Any) -> int | None:
    """The innermost template line in a traceback. Jinja rewrites template
    frames so they carry template line numbers under ``<template>``."""
    lines = [lineno for frame, lineno in traceback.walk_tb(tb) if frame.f_code.co_filename == _TEMPLATE_FILENAME]
    return lines[-1] if lines else None


def _runtime_error(exc: Exception) -> TemplateError:
    return TemplateError(_describe(exc), _template_line(exc.__traceback__))


def _reject_constant(name: str) -> NoReturn:
    raise TemplateError(f"rendered output is not valid JSON: {name} is not a JSON value")


def _parse_output(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise TemplateError(
            f"rendered output is not valid JSON: {exc.msg} at output line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise TemplateError("rendered output is nested too deeply") from exc


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


# -- Public API ----------------------------------------------------------------


def template_context(payload: Any, *, event: Mapping[str, Any]) -> dict[str, Any]:
    """The variables a payload template sees for one event.

    The payload's keys are available directly (``order.id``) when the payload
    is an object; ``payload`` is the whole payload whatever its type, and
    ``event`` has ``id``, ``type``, ``created_at`` (an ISO 8601 string) and
    ``data`` (the payload again). ``payload`` and ``event`` win over payload
    keys of the same name, so templates can rely on them. Non-string keys
    cannot be template names and are left out of the top level.
    """
    context = {k: v for k, v in payload.items() if isinstance(k, str)} if isinstance(payload, Mapping) else {}
    created_at = event.get("created_at")
    event_id = event.get("id")
    context["payload"] = payload
    context["event"] = {
        "id": event_id if event_id is None or isinstance(event_id, (str, int)) else str(event_id),
        "type": event.get("type"),
        "created_at": created_at.isoformat() if isinstance(created_at, date) else created_at,
        "data": payload,
    }
    return context


class CompiledTemplate:
    """A payload template ready to render. Immutable, so one instance is
    shared by every delivery and rendered from many threads at once."""

    def __init__(self, template: Template) -> None:
        self._template = template

    def render_json(
        self, context: Mapping[str, Any], *, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = MAX_OUTPUT_BYTES
    ) -> str:
        """Render with ``context`` and return the text, which is valid JSON.

        Rendering stops with :class:`TemplateError` after ``timeout`` seconds,
        once the output passes ``max_bytes`` UTF-8 bytes, or once the values
        the template builds along the way pass ``max_bytes`` characters.
        Errors raised by the template carry its line. Output that is not JSON
        (``NaN`` and ``Infinity`` included: receivers reject them) is an
        error whose message gives the line and column in the *output*.
        """
        return self._render_parsed(context, timeout, max_bytes)[0]

    def _render_parsed(self, context: Mapping[str, Any], timeout: float, max_bytes: int) -> tuple[str, Any]:
        text = self._render(context, timeout, max_bytes)
        return text, _parse_output(text)

    def _render(self, context: Mapping[str, Any], timeout: float, max_bytes: int) -> str:
        chunks = []
        size = 0
        with _bounded(timeout, max_bytes, context) as budget:
            stream = self._template.generate(context)
            try:
                for chunk in stream:
                    size += _utf8_length(chunk)
                    if size > max_bytes:
                        raise TemplateError(f"rendered output exceeds {max_bytes} bytes")
                    budget.tick()
                    chunks.append(chunk)
            except Exception as exc:
                raise _runtime_error(exc) from exc
            finally:
                stream.close()
        return "".join(chunks)


@functools.lru_cache(maxsize=_COMPILE_CACHE_SIZE)
def compile_template(body: str) -> CompiledTemplate:
    """Compile a payload template, or raise :class:`TemplateError`.

    Syntax errors, unknown filters and the like carry their line. Templates
    nested deeper than Python can compile are a ``TemplateError`` too, so
    callers handle one exception.
    Results are cached by body: the same template renders for every
    delivery of an endpoint. Jinja folds constant expressions while
    compiling, so compiling runs under the default render budget as well.
    """
    with _bounded(DEFAULT_TIMEOUT, MAX_OUTPUT_BYTES):
        try:
            return CompiledTemplate(_ENVIRONMENT.from_string(body))
        except jinja_exceptions.TemplateSyntaxError as exc:
            raise TemplateError(exc.message or "syntax error", exc.lineno) from exc
        except (RecursionError, SyntaxError) as exc:
            # Python's own limits on the generated code: nesting depth.
            raise TemplateError("template is nested too deeply to compile") from exc


def render_payload(body: str, context: Mapping[str, Any], **kwargs: Any) -> str:
    """Compile (cached) and render ``body``; see :meth:`CompiledTemplate.render_json`."""
    return compile_template(body).render_json(context, **kwargs)


def _pretty(value: Any, text: str) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False)
    except RecursionError:
        return text


def preview(body: str, payload: Any, *, event: Mapping[str, Any]) -> dict[str, Any]:
    """Render ``body`` for a live preview; never raises for a bad template.

    Returns ``{"ok": True, "output": <indented JSON>, "value": <parsed>}`` or
    ``{"ok": False, "error": <message>, "line": <template line or None>}``;
    the message has no "line N:" prefix, as the editor shows the line by
    highlighting it. Uses the default timeout and size limits, the ones
    deliveries get.
    """
    context = template_context(payload, event=event)
    try:
        text, value = compile_template(body)._render_parsed(context, DEFAULT_TIMEOUT, MAX_OUTPUT_BYTES)
    except TemplateError as exc:
        return {"ok": False, "error": exc.message, "line": exc.line}
    return {"ok": True, "output": _pretty(value, text), "value": value}
