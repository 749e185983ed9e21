"""The filter expression language of endpoint filters and inbound routes.

Rules such as ``order.total > 100 and "vip" in customer.tags`` are written by
operators in the UI and evaluated for every event, against payloads that come
from the outside world. So the language is deliberately small and is never
handed to Python: a hand-written tokenizer and recursive-descent parser build
a tree of a few node types, which a tiny interpreter walks. Nothing in the
grammar can reach Python objects (no attribute access, no arbitrary calls, no
arithmetic), the source length and nesting depth are bounded, and every
operation is total: a missing field is ``null``, a comparison or function on
the wrong types is false or ``null``, evaluation never raises.

Own parser rather than ``ast.parse``: it gives errors that name the column and
what was expected, it accepts ``true``/``false``/``null`` natively, and nothing
outside the grammar has to be found and rejected after the fact.

``matches(s, pattern)`` runs on Google's RE2 (``google-re2``), not ``re``.
Python's ``re`` backtracks, so ``(a+)+$`` takes exponential time on
``"a" * 50 + "b"``, and it cannot be interrupted: the match is one C call
that holds the GIL, so neither a timeout nor a watchdog thread gets to run.
RE2 never backtracks: it matches in time linear in the subject, whatever
the pattern, so no timeout is needed. The price is its syntax
(https://github.com/google/re2/wiki/Syntax): lookarounds and
backreferences do not exist there and are refused when the rule is saved;
``\\d \\w \\s \\b`` are ASCII only (``\\pL`` and ``\\pN`` are the Unicode
ones); ``\\Z`` is spelled ``\\z``; ``{,n}`` is a literal, not ``{0,n}``;
and ``$`` matches only at the very end, never before a final newline.
Linear is in the subject times the pattern's program, so both are capped
(``MAX_SUBJECT_LENGTH``, ``MAX_PATTERN_LENGTH``,
``MAX_PATTERN_PROGRAM_SIZE``; ``PATTERN_MAX_MEM`` bounds compilation):
at worst about 0.1 s for one search of a 10,000 character subject.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from typing import Any

import re2

MAX_LENGTH = 2000
MAX_DEPTH = 32
MAX_PATTERN_LENGTH = 200
MAX_PATTERN_PROGRAM_SIZE = 2000  # RE2's ProgramSize(); "\pL+" alone is about 1,200
PATTERN_MAX_MEM = 1 << 20  # an eighth of RE2's default, still enough for its fast DFA on real patterns
MAX_SUBJECT_LENGTH = 10_000
MATCH_MODES = ("all", "any")


class FilterSyntaxError(ValueError):
    """A filter that cannot be parsed.

    ``message`` says what was expected; ``column`` is 1-based, or None when
    the problem is not at one place. ``str()`` gives both, ready for a form.
    """

    def __init__(self, message: str, column: int | None = None) -> None:
        self.message = message
        self.column = column
        super().__init__(f"column {column}: {message}" if column else message)


# -- Tokens ------------------------------------------------------------------

_KEYWORDS = frozenset({"and", "or", "not", "in"})
_CONSTANTS = {
    "true": True,
    "false": False,
    "null": None,
    "True": True,
    "False": False,
    "None": None,
}
_OPERATORS = ("==", "!=", ">=", "<=", ">", "<", "(", ")", "[", "]", ",", ".", "-", "=")
_COMPARATORS = frozenset({"==", "!=", ">=", "<=", ">", "<"})
_STRING_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "/": "/"}
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_HINTS = {
    "=": "use '==' to compare",
    "is": "use '==' or '!=' instead of 'is'",
    "&": "use 'and' instead",
    "|": "use 'or' instead",
    "!": "use 'not' (or '!=') instead",
    "+": "arithmetic is not supported",
    "*": "arithmetic and unpacking are not supported",
    "/": "arithmetic is not supported",
    "%": "arithmetic and formatting are not supported",
    "-": "arithmetic is not supported",
    ":": "slices, lambdas and dictionaries are not supported",
    "{": "dictionary and set literals are not supported",
    ";": "a filter is a single expression",
}


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "number", "string", "op" or "end"
    value: Any
    column: int
    text: str

    def describe(self) -> str:
        if self.kind == "end":
            return "the end of the expression"
        text = self.text if len(self.text) <= 24 else self.text[:21] + "..."
        return f"'{text}'"


def _tokenize(source: str) -> list[_Token]:
    tokens = []
    pos = 0
    while pos < len(source):
        if source[pos].isspace():
            pos += 1
            continue
        token = _read_token(source, pos)
        tokens.append(token)
        pos += len(token.text)
    tokens.append(_Token("end", None, len(source) + 1, ""))
    return tokens


def _read_token(source: str, pos: int) -> _Token:
    char = source[pos]
    if char in "\"'":
        return _read_string(source, pos)
    if char in "0123456789":
        return _read_number(source, pos)
    if char.isalpha() or char == "_":
        end = pos + 1
        while end < len(source) and (source[end].isalnum() or source[end] == "_"):
            end += 1
        return _Token("name", source[pos:end], pos + 1, source[pos:end])
    for op in _OPERATORS:
        if source.startswith(op, pos):
            return _Token("op", op, pos + 1, op)
    message = f"unexpected character {char!r}"
    if char in _HINTS:
        message += f"; {_HINTS[char]}"
    raise FilterSyntaxError(message, pos + 1)


def _read_number(source: str, pos: int) -> _Token:
    match = _NUMBER.match(source, pos)
    text = match.group()
    end = match.end()
    if end < len(source) and (source[end].isalnum() or source[end] in "_."):
        raise FilterSyntaxError(f"invalid number '{text}{source[end]}'", pos + 1)
    value = float(text) if match.group(1) or match.group(2) else int(text)
    return _Token("number", value, pos + 1, text)


def _read_string(source: str, start: int) -> _Token:
    """Read a quoted string; JSON escapes plus ``\\'``.

    Any other backslash sequence is kept as written, so regular expressions
    such as ``"^\\d+$"`` need no double escaping.
    """
    quote = source[start]
    parts = []
    pos = start + 1
    while pos < len(source):
        char = source[pos]
        if char == quote:
            return _Token("string", "".join(parts), start + 1, source[start : pos + 1])
        if char == "\\" and pos + 1 < len(source):
            part, pos = _read_escape(source, pos)
            parts.append(part)
            continue
        parts.append(char)
        pos += 1
    raise FilterSyntaxError(f"unterminated string; expected a closing {quote}", start + 1)


def _read_escape(source: str, pos: int) -> tuple[str, int]:
    char = source[pos + 1]
    if char in _STRING_ESCAPES:
        return _STRING_ESCAPES[char], pos + 2
    if char == "u":
        digits = source[pos + 2 : pos + 6]
        if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
            raise FilterSyntaxError("expected four hex digits after \\u", pos + 1)
        return chr(int(digits, 16)), pos + 6
    return source[pos : pos + 2], pos + 2


# -- Regular expressions -----------------------------------------------------

# A hint for the RE2 errors whose message alone does not say what to write instead.
_PATTERN_HINTS = (
    (re.compile(r"invalid perl operator"), "lookarounds, atomic groups and backreferences are not supported"),
    (re.compile(r"invalid escape sequence: \\[1-9]"), "backreferences are not supported"),
    (re.compile(r"invalid escape sequence: \\Z"), r"use \z (or $) for the end of the text"),
)
_TOO_COMPLEX = "pattern is too complex; use fewer or smaller repeats"


def _pattern_options() -> re2.Options:
    options = re2.Options()
    options.max_mem = PATTERN_MAX_MEM
    # Only "is there a match?" is asked, so RE2 can answer from its DFA without tracking groups.
    options.never_capture = True
    # A bad pattern is reported to the operator as a FilterSyntaxError, not written to stderr.
    options.log_errors = False
    return options


_PATTERN_OPTIONS = _pattern_options()


@functools.lru_cache(maxsize=256)
def _compile_pattern(pattern: str) -> Any:
    """Compile a ``matches()`` pattern with RE2.

    Raises :exc:`FilterSyntaxError` without a column (the parser adds it)
    for anything RE2 does not accept, and for patterns whose program
    exceeds ``MAX_PATTERN_PROGRAM_SIZE`` or whose compilation would need
    more than ``PATTERN_MAX_MEM`` bytes. Cached, so that rules sharing a
    pattern share one RE2 object and the DFA states it builds while matching.
    """
    try:
        regex = re2.compile(pattern, _PATTERN_OPTIONS)
    except re2.error as error:
        raise FilterSyntaxError(_pattern_error_message(error)) from None
    if regex.programsize > MAX_PATTERN_PROGRAM_SIZE:
        raise FilterSyntaxError(_TOO_COMPLEX)
    return regex


def _pattern_error_message(error: re2.error) -> str:
    detail = error.args[0] if error.args else b""
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    if detail.startswith("pattern too large"):  # over PATTERN_MAX_MEM
        return _TOO_COMPLEX
    message = f"invalid pattern: {detail}"
    for found, hint in _PATTERN_HINTS:
        if found.match(detail):
            return f"{message}; {hint}"
    return message


def _utf8(text: str) -> bytes:
    """``text`` as the UTF-8 RE2 reads.

    JSON may carry lone surrogates (``"\\ud800"``), which UTF-8 cannot
    encode; each becomes U+FFFD, so it still counts as one character.
    """
    try:
        return text.encode()
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text).encode()


# -- Values ------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _equal(left: Any, right: Any) -> bool:
    """JSON equality: ``true != 1``, ``1 == 1.0``, lists and objects by content.

    Iterative, so deeply nested payloads cannot exhaust the stack.
    """
    pending = [(left, right)]
    while pending:
        a, b = pending.pop()
        if isinstance(a, bool) or isinstance(b, bool):
            if not (isinstance(a, bool) and isinstance(b, bool) and a == b):
                return False
        elif _is_number(a) and _is_number(b) or isinstance(a, str) and isinstance(b, str):
            if a != b:
                return False
        elif _is_list(a) and _is_list(b) and len(a) == len(b):
            pending.extend(zip(a, b))
        elif isinstance(a, Mapping) and isinstance(b, Mapping) and a.keys() == b.keys():
            pending.extend((a[key], b[key]) for key in a)
        elif not (a is None and b is None):
            return False
    return True


def _ordering(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def ordered(left: Any, right: Any) -> bool:
        if _is_number(left) and _is_number(right) or isinstance(left, str) and isinstance(right, str):
            return compare(left, right)
        return False

    return ordered


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if _is_list(container):
        return any(_equal(element, item) for element in container)
    if isinstance(container, Mapping):
        return isinstance(item, str) and item in container
    return False


def _lookup(container: Any, key: Any) -> Any:
    if isinstance(container, Mapping):
        return container.get(key) if isinstance(key, str) else None
    if _is_list(container) and isinstance(key, int) and not isinstance(key, bool):
        return container[key] if -len(container) <= key < len(container) else None
    return None


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "<": _ordering(operator.lt),
    "<=": _ordering(operator.le),
    ">": _ordering(operator.gt),
    ">=": _ordering(operator.ge),
    "in": lambda a, b: _contains(b, a),
    "not in": lambda a, b: not _contains(b, a),
}


def _startswith(text: Any, prefix: Any) -> bool:
    return isinstance(text, str) and isinstance(prefix, str) and text.startswith(prefix)


def _endswith(text: Any, suffix: Any) -> bool:
    return isinstance(text, str) and isinstance(suffix, str) and text.endswith(suffix)


def _lower(text: Any) -> str | None:
    return text.lower() if isinstance(text, str) else None


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple, Mapping)) else None


_FUNCTIONS: dict[str, tuple[Callable[..., Any], int]] = {
    "exists": (lambda value: value is not None, 1),
    "startswith": (_startswith, 2),
    "endswith": (_endswith, 2),
    "contains": (_contains, 2),
    "lower": (_lower, 1),
    "len": (_length, 1),
    "matches": (None, 2),  # compiled at parse time by _Parser.matches
}


# -- Tree --------------------------------------------------------------------
# Each node is a frozen callable taking the context mapping.


@dataclass(frozen=True)
class _Literal:
    value: Any

    def __call__(self, context: Mapping[str, Any]) -> Any:
        return self.value


@dataclass(frozen=True)
class _List:
    items: tuple

    def __call__(self, context: Mapping[str, Any]) -> list:
        return [item(context) for item in self.items]


@dataclass(frozen=True)
class _Name:
    name: str

    def __call__(self, context: Mapping[str, Any]) -> Any:
        return context.get(self.name)


@dataclass(frozen=True)
class _Path:
    base: Callable
    keys: tuple

    def __call__(self, context: Mapping[str, Any]) -> Any:
        value = self.base(context)
        for key in self.keys:
            value = _lookup(value, key(context))
        return value


@dataclass(frozen=True)
class _Call:
    function: Callable[..., Any]
    args: tuple

    def __call__(self, context: Mapping[str, Any]) -> Any:
        return self.function(*(arg(context) for arg in self.args))


@dataclass(frozen=True)
class _Matches:
    subject: Callable
    regex: Any  # a compiled re2._Regexp

    def __call__(self, context: Mapping[str, Any]) -> bool:
        subject = self.subject(context)
        if not isinstance(subject, str) or len(subject) > MAX_SUBJECT_LENGTH:
            return False
        return self.regex.search(_utf8(subject)) is not None


@dataclass(frozen=True)
class _Compare:
    first: Callable
    rest: tuple  # of (operator, node)

    def __call__(self, context: Mapping[str, Any]) -> bool:
        left = self.first(context)
        for op, node in self.rest:
            right = node(context)
            if not _COMPARISONS[op](left, right):
                return False
            left = right
        return True


@dataclass(frozen=True)
class _Not:
    operand: Callable
    negate: bool  # an even run of "not" only converts to a boolean

    def __call__(self, context: Mapping[str, Any]) -> bool:
        return bool(self.operand(context)) != self.negate


@dataclass(frozen=True)
class _And:
    operands: tuple

    def __call__(self, context: Mapping[str, Any]) -> bool:
        return all(operand(context) for operand in self.operands)


@dataclass(frozen=True)
class _Or:
    operands: tuple

    def __call__(self, context: Mapping[str, Any]) -> bool:
        return any(operand(context) for operand in self.operands)


# -- Parser ------------------------------------------------------------------


class _Parser:
    """Recursive descent over the grammar, loosest binding first::

        or_expr    := and_expr ("or" and_expr)*
        and_expr   := not_expr ("and" not_expr)*
        not_expr   := "not"* comparison
        comparison := primary (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") primary)*
        primary    := atom ("." NAME | "[" or_expr "]")*
        atom       := NUMBER | "-" NUMBER | STRING | constant | NAME | NAME "(" args ")"
                    | "(" or_expr ")" | "[" [or_expr ("," or_expr)* [","]] "]"
    """

    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.pos = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.pos]

    def advance(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def at(self, kind: str, value: Any) -> bool:
        return self.token.kind == kind and self.token.value == value

    def accept(self, kind: str, value: Any) -> bool:
        if self.at(kind, value):
            self.pos += 1
            return True
        return False

    def expected(self, what: str) -> FilterSyntaxError:
        message = f"expected {what}"
        if self.pos:
            message += f" after {self.tokens[self.pos - 1].describe()}"
        return FilterSyntaxError(f"{message}, found {self.token.describe()}", self.token.column)

    @contextmanager
    def nested(self, opening: _Token):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterSyntaxError(f"expression is nested too deeply (the limit is {MAX_DEPTH} levels)", opening.column)
        yield
        self.depth -= 1

    def parse(self) -> Callable:
        if self.token.kind == "end":
            raise FilterSyntaxError("the filter is empty; expected an expression", 1)
        tree = self.or_expr()
        if self.token.kind != "end":
            raise self.unexpected()
        return tree

    def unexpected(self) -> FilterSyntaxError:
        error = self.expected("an operator or the end of the expression")
        hint = _HINTS.get(self.token.value) if self.token.kind in ("op", "name") else None
        return FilterSyntaxError(f"{error.message}; {hint}" if hint else error.message, error.column)

    def or_expr(self) -> Callable:
        operands = [self.and_expr()]
        while self.accept("name", "or"):
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else _Or(tuple(operands))

    def and_expr(self) -> Callable:
        operands = [self.not_expr()]
        while self.accept("name", "and"):
            operands.append(self.not_expr())
        return operands[0] if len(operands) == 1 else _And(tuple(operands))

    def not_expr(self) -> Callable:
        count = 0
        while self.accept("name", "not"):
            count += 1
        operand = self.comparison()
        return _Not(operand, count % 2 == 1) if count else operand

    def comparison(self) -> Callable:
        first = self.primary()
        rest = []
        while (op := self.comparator()) is not None:
            rest.append((op, self.primary()))
        return _Compare(first, tuple(rest)) if rest else first

    def comparator(self) -> str | None:
        token = self.token
        if token.kind == "op" and token.value in _COMPARATORS or self.at("name", "in"):
            self.pos += 1
            return token.value
        if self.accept("name", "not"):
            if not self.accept("name", "in"):
                raise self.expected("'in'")
            return "not in"
        return None

    def primary(self) -> Callable:
        node = self.atom()
        keys = []
        while True:
            if self.accept("op", "."):
                keys.append(_Literal(self.field_name()))
            elif self.at("op", "["):
                keys.append(self.subscript())
            elif self.at("op", "("):
                raise FilterSyntaxError(
                    "only the built-in functions can be called, by bare name, e.g. lower(x)", self.token.column
                )
            else:
                return _Path(node, tuple(keys)) if keys else node

    def field_name(self) -> str:
        if self.token.kind != "name":
            raise self.expected("a field name")
        return self.checked_name(self.advance())

    def checked_name(self, token: _Token) -> str:
        if token.value.startswith("_"):
            raise FilterSyntaxError(f"names starting with '_' are not allowed: '{token.value}'", token.column)
        return token.value

    def subscript(self) -> Callable:
        opening = self.advance()
        with self.nested(opening):
            key = self.or_expr()
            self.closing("]", opening)
        return key

    def closing(self, closer: str, opening: _Token) -> None:
        if not self.accept("op", closer):
            raise self.expected(f"'{closer}' to close '{opening.value}' from column {opening.column}")

    def atom(self) -> Callable:
        token = self.token
        if token.kind in ("number", "string"):
            return _Literal(self.advance().value)
        if token.kind == "op" and token.value in ("-", "(", "["):
            return {"-": self.negative, "(": self.parenthesized, "[": self.list_literal}[token.value]()
        if token.kind != "name" or token.value in _KEYWORDS:
            raise self.expected("an operand")
        self.advance()
        if token.value in _CONSTANTS:
            return _Literal(_CONSTANTS[token.value])
        if self.at("op", "("):
            return self.call(token)
        return _Name(self.checked_name(token))

    def negative(self) -> Callable:
        self.advance()
        if self.token.kind != "number":
            raise self.expected("a number")
        return _Literal(-self.advance().value)

    def parenthesized(self) -> Callable:
        opening = self.advance()
        with self.nested(opening):
            node = self.or_expr()
            self.closing(")", opening)
        return node

    def list_literal(self) -> Callable:
        opening = self.advance()
        with self.nested(opening):
            items = self.sequence("]", opening)
        return _List(tuple(node for node, _ in items))

    def sequence(self, closer: str, opening: _Token) -> list[tuple[Callable, _Token]]:
        """Comma-separated expressions up to ``closer``, each with its first token."""
        items = []
        while not self.at("op", closer):
            if self.token.kind == "name" and self.tokens[self.pos + 1].text == "=":
                raise FilterSyntaxError("keyword arguments are not supported", self.token.column)
            start = self.token
            items.append((self.or_expr(), start))
            if not self.accept("op", ","):
                break
        self.closing(closer, opening)
        return items

    def call(self, name: _Token) -> Callable:
        if name.value not in _FUNCTIONS:
            known = ", ".join(sorted(_FUNCTIONS))
            raise FilterSyntaxError(f"unknown function '{name.value}'; expected one of {known}", name.column)
        function, arity = _FUNCTIONS[name.value]
        opening = self.advance()
        with self.nested(opening):
            args = self.sequence(")", opening)
        if len(args) != arity:
            plural = "s" if arity > 1 else ""
            raise FilterSyntaxError(f"{name.value}() takes {arity} argument{plural}, got {len(args)}", name.column)
        if function is None:
            return self.matches(*args)
        return _Call(function, tuple(node for node, _ in args))

    def matches(self, subject: tuple[Callable, _Token], pattern: tuple[Callable, _Token]) -> _Matches:
        """Compile ``matches()`` now: the pattern must be a string literal.

        So a bad pattern is reported when the rule is saved, and a payload
        can never supply a pattern of its own.
        """
        node, token = pattern
        if not (isinstance(node, _Literal) and isinstance(node.value, str)):
            raise FilterSyntaxError("the pattern of matches() must be a string literal", token.column)
        if len(node.value) > MAX_PATTERN_LENGTH:
            raise FilterSyntaxError(f"pattern is too long (the limit is {MAX_PATTERN_LENGTH} characters)", token.column)
        try:
            return _Matches(subject[0], _compile_pattern(node.value))
        except FilterSyntaxError as error:
            raise FilterSyntaxError(error.message, token.column) from None


# -- Public API --------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """A parsed filter, reusable and safe to share between threads."""

    source: str
    _tree: Callable[[Mapping[str, Any]], Any] = field(repr=False, compare=False)

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        """Whether the filter matches ``context`` (see :func:`build_context`).

        The truthiness of :meth:`value`: ``null``, ``false``, ``0``, ``""``,
        ``[]`` and ``{}`` do not match. Never raises for JSON-like data.
        """
        return bool(self._tree(context))

    def value(self, context: Mapping[str, Any]) -> Any:
        """The raw result, e.g. ``lower(event.type)``; for previews and debugging."""
        return self._tree(context)


def parse(source: str) -> Expression:
    """Parse a filter expression.

    Results are cached, since the same few rules are evaluated for every
    event. Raises :exc:`FilterSyntaxError` for anything that is not a valid
    filter, including non-strings, sources over ``MAX_LENGTH`` characters
    and nesting deeper than ``MAX_DEPTH``.
    """
    if not isinstance(source, str):
        raise FilterSyntaxError(f"a filter must be a string, not {type(source).__name__}")
    if len(source) > MAX_LENGTH:
        raise FilterSyntaxError(f"the filter is too long ({len(source)} characters; the limit is {MAX_LENGTH})")
    return _parse_cached(source)


@functools.lru_cache(maxsize=1024)
def _parse_cached(source: str) -> Expression:
    return Expression(source, _Parser(source).parse())


class _Headers(dict):
    """A dict with lowercased keys whose lookups ignore case."""

    def __init__(self, headers: Any) -> None:
        super().__init__((str(key).lower(), value) for key, value in headers.items())

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(key.lower() if isinstance(key, str) else key)

    def __contains__(self, key: Any) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(key.lower() if isinstance(key, str) else key, default)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float)):
        return value
    return value.isoformat() if isinstance(value, date) else str(value)


def build_context(
    payload: Any,
    *,
    event: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The names a filter can use for one event.

    The keys of a dict payload become top-level names (``order.total``), and
    the whole payload is ``payload`` (for non-dict payloads and keys that are
    not identifiers: ``payload["x-id"]``). ``event`` has ``id``, ``type`` and
    ``created_at``, datetimes as ISO 8601 strings so that they compare as
    text. ``headers`` (inbound) may be any mapping or werkzeug ``Headers``;
    lookups ignore case. These three reserved names win over payload keys.
    """
    event = event or {}
    context = dict(payload) if isinstance(payload, Mapping) else {}
    context["payload"] = payload
    context["event"] = {key: _plain(event.get(key)) for key in ("id", "type", "created_at")}
    context["headers"] = _Headers(headers or {})
    return context


@dataclass(frozen=True)
class RuleResult:
    """How one rule fared; ``error`` is the syntax error text of a broken rule."""

    index: int
    rule: str
    matched: bool
    error: str | None


@dataclass(frozen=True)
class FilterOutcome:
    """The decision over a list of rules, with every rule's result for explanations."""

    matched: bool
    results: list[RuleResult]
    decided_by: int | None


def _check_match_mode(match: str) -> None:
    if match not in MATCH_MODES:
        raise ValueError(f"match must be 'all' or 'any', not {match!r}")


def _run_rule(index: int, rule: str, context: Mapping[str, Any]) -> RuleResult:
    try:
        return RuleResult(index, rule, parse(rule).evaluate(context), None)
    except FilterSyntaxError as error:
        return RuleResult(index, rule, False, str(error))


def evaluate_rules(rules: Sequence[str], match: str, context: Mapping[str, Any]) -> FilterOutcome:
    """Decide whether ``context`` passes ``rules``, combined with ``match``.

    ``"all"`` needs every rule to match, ``"any"`` at least one; no rules
    always match. Every rule is evaluated, not only up to the decision, so
    the UI can show why. ``decided_by`` is the first failing rule for
    ``"all"`` and the first matching one for ``"any"``; when no rule settles
    it early (all match, or none does), the last rule. A rule that does not
    parse does not match, and carries its error.
    """
    _check_match_mode(match)
    results = [_run_rule(index, rule, context) for index, rule in enumerate(rules)]
    if not results:
        return FilterOutcome(True, results, None)
    wanted = match == "any"
    decisive = next((r.index for r in results if r.matched == wanted), None)
    if decisive is None:
        return FilterOutcome(not wanted, results, results[-1].index)
    return FilterOutcome(wanted, results, decisive)


def validate_rules(rules: Sequence[str], match: str) -> list[tuple[int, FilterSyntaxError]]:
    """The rules that do not parse, as ``(index, error)``, for save-time validation.

    Raises :exc:`ValueError` if ``match`` is neither ``"all"`` nor ``"any"``.
    """
    _check_match_mode(match)
    errors = []
    for index, rule in enumerate(rules):
        try:
            parse(rule)
        except FilterSyntaxError as error:
            errors.append((index, error))
    return errors
