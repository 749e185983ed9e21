"""Payload templates: JSON output, missing fields, errors that name their line,
and the sandbox's bounds on escapes, time and size. Pure: no app, no database."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from datetime import timezone

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from jinja2.sandbox import SecurityError

from webhooks.templating import MAX_OUTPUT_BYTES
from webhooks.templating import TemplateError
from webhooks.templating import compile_template
from webhooks.templating import preview
from webhooks.templating import render_payload
from webhooks.templating import template_context

EVENT = {
    "id": "evt_01HZX",
    "type": "order.created",
    "created_at": datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc),
}
ORDER = {
    "order": {
        "id": "ord_9f2",
        "total": 149.9,
        "currency": "EUR",
        "customer": {"name": 'Zoë "Z" Müller', "email": "zoe@example.com"},
        "lines": [
            {"sku": "TSHIRT-M", "qty": 2, "price": 25.0},
            {"sku": "MUG", "qty": 1, "price": 99.9},
        ],
    }
}
EXAMPLE = '{"order_id": {{ order.id | tojson }}, "total": {{ order.total }}, "at": {{ event.created_at | tojson }}}'


def render(body, payload=ORDER, **kwargs):
    return json.loads(render_payload(body, template_context(payload, event=EVENT), **kwargs))


def render_error(body, payload=ORDER, **kwargs) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        render_payload(body, template_context(payload, event=EVENT), **kwargs)
    return info.value


# -- Rendering -----------------------------------------------------------------


def test_example_template_renders_an_order():
    text = render_payload(EXAMPLE, template_context(ORDER, event=EVENT))
    assert text == '{"order_id": "ord_9f2", "total": 149.9, "at": "2026-03-01T12:30:00+00:00"}'


def test_realistic_template_with_loops_and_filters():
    body = """{
  "id": {{ order.id | tojson }},
  "customer": {{ order.customer.name | tojson }},
  "lines": [
    {% for line in order.lines %}
    {"sku": {{ line.sku | lower | tojson }}, "amount": {{ line.qty * line.price }}}{{ "," if not loop.last }}
    {% endfor %}
  ],
  "units": {{ order.lines | sum(attribute="qty") }},
  "skus": {{ order.lines | map(attribute="sku") | join(", ") | tojson }},
  "type": {{ event.type | tojson }},
  "event_id": {{ event.id | tojson }}
}"""
    assert render(body) == {
        "id": "ord_9f2",
        "customer": 'Zoë "Z" Müller',
        "lines": [{"sku": "tshirt-m", "amount": 50.0}, {"sku": "mug", "amount": 99.9}],
        "units": 3,
        "skus": "TSHIRT-M, MUG",
        "type": "order.created",
        "event_id": "evt_01HZX",
    }


def test_template_context_puts_payload_keys_on_top_and_reserved_names_win():
    payload = {"order": {"id": 1}, "payload": "shadowed", "event": "shadowed", 7: "not a name"}
    context = template_context(payload, event=EVENT)
    assert context["order"] == {"id": 1}
    assert context["payload"] is payload
    assert context["event"] == {
        "id": "evt_01HZX",
        "type": "order.created",
        "created_at": "2026-03-01T12:30:00+00:00",
        "data": payload,
    }
    assert 7 not in context


def test_template_context_of_a_non_object_payload():
    context = template_context([1, 2], event={"id": None, "type": "t", "created_at": "2026-01-01T00:00:00Z"})
    assert context == {
        "payload": [1, 2],
        "event": {"id": None, "type": "t", "created_at": "2026-01-01T00:00:00Z", "data": [1, 2]},
    }


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("order.coupon | tojson", None),
        ("order.coupon.code | tojson", None),
        ("nothing.at['all'] | tojson", None),
        ("[order.coupon, 1] | tojson", [None, 1]),
        ('order.coupon | default("none") | tojson', "none"),
        ("order.coupon is defined", False),
    ],
)
def test_missing_fields_are_null(expression, expected):
    assert render("{{ %s }}" % expression) == expected


def test_missing_field_written_bare_fails_json_validation_with_output_position():
    error = render_error('{"discount": {{ order.discount }}}')
    assert error.message == "rendered output is not valid JSON: Expecting value at output line 1 column 14"
    assert error.line is None


def test_bare_values_render_as_json_not_python():
    body = '{"n": {{ none }}, "t": {{ true }}, "line": {{ order.lines[0] }}, "s": "{{ "x" ~ none ~ [1] }}"}'
    assert render(body) == {"n": None, "t": True, "line": {"sku": "TSHIRT-M", "qty": 2, "price": 25.0}, "s": "xnull[1]"}


@pytest.mark.parametrize(
    "value",
    [
        'say "hi"',
        "two\nlines\tand\r\\ backslash",
        "Zoë 🎉 日本語",
        "</script><b>&'",
        "\u2028\u2029\x00\x1f",
        "",
    ],
)
def test_tojson_of_strings_round_trips_compact_and_unescaped(value):
    text = render_payload("{{ value | tojson }}", {"value": value})
    assert json.loads(text) == value
    assert text == json.dumps(value, ensure_ascii=False)


def test_tojson_is_compact_and_keeps_key_order():
    payload = {"b": 1, "a": [1, {"z": None, "y": True}]}
    assert render_payload("{{ payload | tojson }}", template_context(payload, event=EVENT)) == (
        '{"b":1,"a":[1,{"z":null,"y":true}]}'
    )


def test_tojson_of_filter_results_needs_no_list():
    assert render('{{ order.lines | map(attribute="qty") | tojson }}') == [2, 1]


def test_read_only_methods_of_data_are_available():
    body = """{
  "domain": {{ order.customer.email.split("@")[1] | upper | tojson }},
  "keys": {{ order.customer.keys() | list | tojson }},
  "currency": {{ order.get("currency") | tojson }},
  "pairs": [{% for key, value in order.customer.items() %}{{ key | tojson }}{{ "," if not loop.last }}{% endfor %}]
}"""
    assert render(body) == {"domain": "EXAMPLE.COM", "keys": ["name", "email"], "currency": "EUR", "pairs": ["name", "email"]}


def test_method_names_shadowing_keys_get_a_hint():
    error = render_error("{{ box.items | tojson }}", {"box": {"items": [1]}})
    assert "for a key named 'items' write x['items']" in error.message
    assert render('{{ box["items"] | tojson }}', {"box": {"items": [1]}}) == [1]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"x": float("nan")}, "Out of range float"),
        ({"x": "\ud800"}, "surrogates not allowed"),
    ],
)
def test_values_that_cannot_be_sent_are_errors(payload, fragment):
    assert fragment in render_error('{"x": {{ x | tojson }}}', payload).message


def test_nan_written_as_text_is_not_json():
    assert render_error('{"x": NaN}').message == "rendered output is not valid JSON: NaN is not a JSON value"


# -- Errors name their line ----------------------------------------------------


def test_syntax_error_has_line_and_message():
    with pytest.raises(TemplateError) as info:
        compile_template('{\n  "a": 1,\n  "b": {{ order.id }\n}')
    assert info.value.line == 3
    assert info.value.message == "unexpected '}'"
    assert str(info.value) == "line 3: unexpected '}'"


def test_unknown_filter_is_a_compile_error_with_line():
    with pytest.raises(TemplateError) as info:
        compile_template('{\n"a": {{ order.id | center(80) }}}')
    assert (info.value.line, info.value.message) == (2, "No filter named 'center'.")


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ('{\n  "a": 1,\n  "b": {{ 1 // 0 }}\n}', 3, "ZeroDivisionError: integer division or modulo by zero"),
        ('{\n  "a": {{ nope() }}\n}', 2, "'nope' is undefined"),
        ('{% macro m(x) %}\n{{ x.a + 1 }}\n{% endmacro %}\n{"v": {{ m(1) }}}', 2, "'int object' has no attribute 'a'"),
        ('{\n"x": [{% for line in order.lines %}\n{{ line.qty // (line.qty - 1) }},{% endfor %}0]}', 3, "ZeroDivisionError"),
    ],
)
def test_runtime_error_has_template_line(body, line, message):
    error = render_error(body)
    assert error.line == line
    assert error.message.startswith(message)
    assert str(error).startswith(f"line {line}: ")


def test_invalid_json_output_says_where_in_the_output():
    error = render_error('{"a": {{ name }}}', {"name": "bob"})
    assert error.message == "rendered output is not valid JSON: Expecting value at output line 1 column 7"
    assert str(error) == error.message


def test_compile_is_cached_by_body():
    assert compile_template(EXAMPLE) is compile_template(EXAMPLE)


def test_templates_nested_beyond_python_are_template_errors():
    with pytest.raises(TemplateError, match="nested too deeply"):
        compile_template("{% for a in [1] %}" * 25 + "{% endfor %}" * 25)


# -- Sandbox -------------------------------------------------------------------

ESCAPES = [
    '{{ "".__class__.__mro__[1].__subclasses__() }}',
    "{{ ().__class__.__base__.__subclasses__()[0] }}",
    '{{ payload.__class__.__init__.__globals__["os"] }}',
    '{{ order["__cla" ~ "ss__"] }}',
    '{{ order | attr("\\x5f\\x5fclass\\x5f\\x5f") }}',
    '{{ order.lines | map(attribute="__class__") | list }}',
    '{{ order.lines | selectattr("__class__") | list }}',
    '{{ range.__globals__["__builtins__"] }}',
    "{{ range.func_globals }}",
    "{{ range.mro() }}",
    '{{ self.__init__.__globals__.__builtins__.__import__("os").popen("id").read() }}',
    '{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen("id").read() }}',
    '{{ cycler.__init__.__globals__.os.popen("id").read() }}',
    '{{ joiner.__init__.__globals__.os.popen("id").read() }}',
    '{{ namespace.__init__.__globals__.os.popen("id").read() }}',
    '{{ lipsum.__globals__["os"].popen("id").read() }}',
    '{{ config.__class__.__init__.__globals__["os"].popen("id").read() }}',
    '{{ request.application.__globals__.__builtins__.__import__("os") }}',
    '{% set ns = namespace(x=1) %}{"x": {{ ns.x }}}',
    '{{ (order.lines | map("string")).gi_frame.f_globals }}',
    '{{ (order.lines | map("string")).gi_code.co_consts }}',
    "{% macro m() %}{% endmacro %}{{ m._func.__globals__ }}",
    "{% for x in [1] %}{{ loop._iterator }}{% endfor %}",
    '{{ "{0.__class__.__mro__}".format(order) }}',
    '{{ "{0}".format_map(order) }}',
    '{{ "%s" | format(order) }}',
    '{{ "%s" % order }}',
    '{{ order.update({"id": 1}) }}',
    "{{ order.lines.append(1) }}",
    "{{ order.lines.pop() }}",
    '{% include "/etc/passwd" %}',
    '{% import "os" as os %}',
    '{% extends "base.html" %}',
]


@pytest.mark.parametrize("body", ESCAPES)
def test_sandbox_escapes_are_refused(body):
    context = template_context(ORDER, event=EVENT)
    with pytest.raises(TemplateError) as info:
        compile_template(body).render_json(context)
    assert info.value.message
    assert "popen" not in info.value.message


@pytest.mark.parametrize(
    "body",
    ['{{ "".__class__ }}', "{{ range.func_globals }}", '{{ "{0}".format(1) }}', '{{ "%s" % 1 }}', "{{ order.clear() }}"],
)
def test_refusals_are_security_errors_with_line(body):
    error = render_error("[\n" + body + "\n]")
    assert isinstance(error.__cause__, SecurityError)
    assert error.line == 2


def test_payload_is_not_changed_by_a_template():
    payload = {"order": {"id": 1, "lines": [1]}}
    render_error("{{ order.lines.append(2) }}{{ order.update({}) }}", payload)
    assert payload == {"order": {"id": 1, "lines": [1]}}


AMPLIFIERS = [
    '{{ "a" * 10**9 }}',
    "{{ [1] * 10**9 }}",
    "{{ 2 ** (10**9) }}",
    "{{ (2 ** 60000) * (2 ** 60000) }}",
    "{{ range(10**9) | list }}",
    '{{ "a".ljust(10**9) }}',
    '{{ "a".zfill(10**9) }}',
    '{{ "\\t".expandtabs(10**9) }}',
    '{{ (1).to_bytes(10**9, "big") }}',
    '{{ "{:>999999999}".format(1) }}',
    '{{ "%999999999d" % 1 }}',
    '{{ "x" | center(10**9) }}',
    '{{ [1] | batch(10**9, "x") | list }}',
    '{% set s = "x" * 100000 %}{{ range(100000) | join(s) }}',
    '{% set s = "x" * 100000 %}{{ range(100000) | map("string") | join(s) }}',
    '{% set s = "x" * 100000 %}{{ range(100000) | map("string") | map("replace", "", s) | list | length }}',
    '{% set s = "x" * 1000000 %}{{ [s, s, s, s, s, s, s, s, s, s, s] | tojson }}',
    '{% set s = "x" * 1000000 %}{{ [s, s, s, s, s, s, s, s, s, s, s] | string }}',
    '{% set s = "x" * 1000000 %}{{ [s, s, s, s, s, s, s, s, s, s, s] | lower }}',
    '{% set s = "x" * 1000000 %}{{ ([s, s, s, s, s, s, s, s, s, s, s] ~ "") | length }}',
    '{% set a = "x" * 100000 %}{% set b = a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a %}{% set c = b ~ b ~ b ~ b ~ b ~ b ~ b ~ b ~ b ~ b ~ b %}',
    '{% set a = "x" * 100000 %}{% set b = a + a + a + a + a + a + a + a + a + a %}{% set c = b + b + b + b + b + b + b + b + b + b + b %}',
    '{% set s = "x" * 100000 %}{% set t %}{% for i in range(100000) %}{{ s }}{% endfor %}{% endset %}{{ t | length }}',
    '{% macro grow(s, n) %}{{ grow(s ~ s, n - 1) if n else s | length }}{% endmacro %}{{ grow("x", 60) }}',
    "{% macro fan(n) %}{% if n %}{{ fan(n - 1) }}{{ fan(n - 1) }}{% else %}xxxxxxxx{% endif %}{% endmacro %}{{ fan(40) }}",
    "{{ [1, 2] | sum(start=[]) }}",
]


@pytest.mark.parametrize("body", AMPLIFIERS)
def test_amplification_is_refused_before_it_allocates(body):
    started = time.monotonic()
    render_error(body)
    assert time.monotonic() - started < 1.5


def test_range_is_capped():
    assert "Range too big" in render_error("{{ range(10**9) | length }}").message


# -- Time and size -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "payload"),
    [
        ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", {}),
        ("{% for a in items %}{% for b in items %}{% endfor %}{% endfor %}", {"items": list(range(100000))}),
        ("{{ items" + '|map("string")|map("lower")' * 30 + "|list|length }}", {"items": list(range(100000))}),
        ("{% macro f(n) %}{% for i in range(100000) %}{{ f(n - 1) if n }}{% endfor %}{% endmacro %}{{ f(3) }}", {}),
    ],
    ids=["nested-range", "nested-payload-lists", "filter-chain", "loop-in-macro"],
)
def test_long_renders_stop_at_the_timeout(body, payload):
    started = time.monotonic()
    error = render_error(body, payload, timeout=0.2)
    assert error.message == "rendering took longer than 0.2 s"
    assert error.line == 1
    assert time.monotonic() - started < 1.0


def test_output_is_capped_at_max_bytes():
    body = "[{% for i in range(1000) %}{{ i }},{% endfor %}0]"
    assert render_error(body, max_bytes=100).message == "rendered output exceeds 100 bytes"
    assert len(render(body, max_bytes=10_000)) == 1001


def test_output_cap_counts_utf8_bytes():
    body = '{"s": {{ s | tojson }}}'
    assert render_error(body, {"s": "é" * 60}, max_bytes=100).message == "rendered output exceeds 100 bytes"
    assert render(body, {"s": "e" * 60}, max_bytes=100) == {"s": "e" * 60}


def test_output_cap_at_the_default_stops_as_it_goes():
    body = '[{% for i in range(100000) %}{% for j in range(100000) %}"' + "x" * 1000 + '",{% endfor %}{% endfor %}0]'
    started = time.monotonic()
    error = render_error(body)
    assert error.message == f"rendered output exceeds {MAX_OUTPUT_BYTES} bytes"
    assert time.monotonic() - started < 1.0


def test_large_payload_passes_through_within_the_default_limits():
    payload = {"items": [{"id": i, "name": f"item {i}", "price": i * 1.5} for i in range(30_000)]}
    started = time.monotonic()
    assert render('{"data": {{ payload | tojson }}}', payload) == {"data": payload}
    assert time.monotonic() - started < 1.0


def test_renders_are_independent_across_threads():
    template = compile_template('{"n": {{ n }}, "sq": [{% for i in range(n) %}{{ i * i }}{{ "," if not loop.last }}{% endfor %}]}')
    slow = compile_template("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}")
    results: dict[int, object] = {}
    barrier = threading.Barrier(9)

    def fast(n):
        barrier.wait()
        for _ in range(50):
            results[n] = json.loads(template.render_json({"n": n}))

    def stuck():
        barrier.wait()
        try:
            slow.render_json({}, timeout=0.2)
        except TemplateError as error:
            results[-1] = error.message

    threads = [threading.Thread(target=fast, args=(n,)) for n in range(1, 9)] + [threading.Thread(target=stuck)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.pop(-1) == "rendering took longer than 0.2 s"
    assert results == {n: {"n": n, "sq": [i * i for i in range(n)]} for n in range(1, 9)}


# -- Preview -------------------------------------------------------------------


def test_preview_returns_pretty_output_and_value():
    result = preview('{"who": {{ order.customer.name | tojson }}}', ORDER, event=EVENT)
    assert result == {"ok": True, "output": '{\n  "who": "Zoë \\"Z\\" Müller"\n}', "value": {"who": 'Zoë "Z" Müller'}}


def test_preview_reports_error_and_line():
    assert preview('{\n"a": {{ 1 // 0 }}}', ORDER, event=EVENT) == {
        "ok": False,
        "error": "ZeroDivisionError: integer division or modulo by zero",
        "line": 2,
    }


def test_preview_of_deeply_nested_output():
    assert preview("[" * 5000 + "]" * 5000, {}, event=EVENT)["error"] == "rendered output is nested too deeply"
    assert preview("[" * 500 + "]" * 500, {}, event=EVENT)["ok"]


# -- Properties ----------------------------------------------------------------

TOKENS = st.sampled_from(
    [
        "{{", "}}", "{%", "%}", "{#", "#}", "for", "x", "in", "range(3)", "endfor", "if", "endif", "else",
        "set", "=", "macro", "endmacro", "m()", "|", "tojson", "join", "default", "upper", "map", "(", ")",
        "[", "]", "{", "}", '"', "'", ",", ":", "~", "+", "*", "**", "%", "-", "/", "//", ".", "__class__",
        "order", "order.lines", "order.id", "loop.index", "1", "0", "10**9", "none", "true", " ", "\n",
    ]
)  # fmt: skip


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=200) | st.lists(TOKENS, max_size=40).map("".join))
def test_compile_returns_or_raises_template_error(body):
    try:
        compiled = compile_template(body)
    except TemplateError as error:
        assert error.message
    else:
        assert hasattr(compiled, "render_json")


@settings(deadline=None, max_examples=200)
@given(st.lists(TOKENS, max_size=40).map("".join))
def test_preview_never_raises(body):
    result = preview(body, ORDER, event=EVENT)
    if result["ok"]:
        assert json.loads(result["output"]) == result["value"]
    else:
        assert result["error"] and (result["line"] is None or result["line"] >= 1)
