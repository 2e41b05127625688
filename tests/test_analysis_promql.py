"""The PromQL namespace binder (delivery/analysis/promql.py): examples of each construct, and
property tests over generated queries (strings with escapes, durations, matchers, label lists,
offset/@, subqueries, or-alternatives) that every selector gets bound and nothing else changes."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delivery.analysis.promql import confine, selectors, tokenize, unquote
from delivery.errors import QueryNotConfined

NS = "shop"
B = f'namespace="{NS}"'


@pytest.mark.parametrize(
    ("query", "bound"),
    [
        ("x", f"x{{{B}}}"),
        ("x{}", f"x{{{B}}}"),
        ('x{a="b",}', f'x{{a="b",{B}}}'),
        ('{__name__=~".+"}', f'{{__name__=~".+",{B}}}'),
        ('x{a="1" or b="2"}', f'x{{a="1",{B} or b="2",{B}}}'),
        ("rate(x[5m])", f"rate(x{{{B}}}[5m])"),
        ("max_over_time(rate(x[1m])[10m:30s] @ 100)", f"max_over_time(rate(x{{{B}}}[1m])[10m:30s] @ 100)"),
        ("x offset -5m", f"x{{{B}}} offset -5m"),
        ("x @ start()", f"x{{{B}}} @ start()"),
        ("sum by (le, job) (x)", f"sum by (le, job) (x{{{B}}})"),
        ("sum(x) without (pod)", f"sum(x{{{B}}}) without (pod)"),
        ("x / on(le) group_left(a) y", f"x{{{B}}} / on(le) group_left(a) y{{{B}}}"),
        ("x / ignoring(a) group_right y", f"x{{{B}}} / ignoring(a) group_right y{{{B}}}"),
        ("x > bool 1", f"x{{{B}}} > bool 1"),
        ("x and y or z unless w", f"x{{{B}}} and y{{{B}}} or z{{{B}}} unless w{{{B}}}"),
        ('count_values("v", x)', f'count_values("v", x{{{B}}})'),
        ("topk(3, x)", f"topk(3, x{{{B}}})"),
        (
            'label_replace(x, "namespace", "other", "a", "(.*)")',
            f'label_replace(x{{{B}}}, "namespace", "other", "a", "(.*)")',
        ),
        ("job:rate5m", f"job:rate5m{{{B}}}"),
        ("vector(1) + time()", "vector(1) + time()"),
        ("-x ^ 2 % 1e3", f"-x{{{B}}} ^ 2 % 1e3"),
        ("Inf > NaN", "Inf > NaN"),
        ("x # a comment with x{}\n + y", f"x{{{B}}} # a comment with x{{}}\n + y{{{B}}}"),
        ("x{a=`raw\\d`}", f"x{{a=`raw\\d`,{B}}}"),
        ('x{a="q\\"uo\\\\te"}', f'x{{a="q\\"uo\\\\te",{B}}}'),
        (f"x{{{B}}}", f"x{{{B}}}"),
        (f'x{{a="1" or {B}}}', f'x{{a="1",{B} or {B}}}'),
        ('{"http.requests"}', f'{{"http.requests",{B}}}'),
        ("SUM BY (le) (X)", f"SUM BY (le) (X{{{B}}})"),
        # a keyword where an operand is expected is a metric name to Prometheus: bound like one
        ("rate(offset[5m])", f"rate(offset{{{B}}}[5m])"),
        ("and + or", f"and{{{B}}} + or{{{B}}}"),
        ("sum(bool) > bool unless", f"sum(bool{{{B}}}) > bool unless{{{B}}}"),
        ("x unless group_left", f"x{{{B}}} unless group_left{{{B}}}"),
        ("sum", f"sum{{{B}}}"),
        ("x offset 1m and offset", f"x{{{B}}} offset 1m and offset{{{B}}}"),
        ("x == bool on(a) group_right() y", f"x{{{B}}} == bool on(a) group_right() y{{{B}}}"),
        ("topk by (a) (3, x)", f"topk by (a) (3, x{{{B}}})"),
        ("start + end", f"start{{{B}}} + end{{{B}}}"),
    ],
)
def test_binding_examples(query: str, bound: str) -> None:
    assert confine(query, NS) == bound
    assert confine(bound, NS) == bound  # idempotent: a bound query is left as it is


@pytest.mark.parametrize(
    "query",
    [
        'x{namespace="other"}',
        'x{namespace=~".*"}',
        'x{namespace=~"shop"}',
        'x{namespace!="a"}',
        'x{namespace!~"a"}',
        'x{"namespace"="other"}',
        'x{"name\\x73pace"="other"}',  # an escape spelling the label name
        'x{a="1" or namespace="other"}',
        "info(x)",
        'x{a="b"',
        "x[5m",
        "x{a=b}",
        "x{a}",
        "",
        "   # nothing",
        'x{a="\\q"}',
        'x{a="line\nbreak"}',
        "x ! y",
        'x{a="b"}{c="d"}',
        "rate(x[step()])",
        "x[1.5m]",
        'sum by (x{a="b"}) (y)',
        "rate(by[5m])",
        "x + on",
        "x / on",
        "x" * 20000,
    ],
)
def test_refused(query: str) -> None:
    with pytest.raises(QueryNotConfined):
        confine(query, NS)


def test_refusal_says_what_to_write_instead() -> None:
    with pytest.raises(QueryNotConfined, match=r'write namespace="\{namespace\}" or leave the matcher out'):
        confine('x{namespace="other"}', NS)


def test_unquote_follows_go_escapes() -> None:
    assert unquote('"a\\"b\\\\c\\n\\x41\\u00e9\\101"') == 'a"b\\c\nAéA'
    assert unquote("'it\\'s'") == "it's"
    assert unquote("`raw\\n`") == "raw\\n"


# --------------------------------------------------------------------------- property tests

LABELS = st.sampled_from(["a", "job", "le", "pod_template_hash", "code", "__name__", "x_1"])
METRICS = st.sampled_from(
    [
        "x",
        "http_requests_total",
        "job:rate5m:sum",
        "envoy_cluster_upstream_rq_total",
        "up",
        "offset",
        "sum",
        "and",
        "bool",
    ]
)
OPS = st.sampled_from(["=", "!=", "=~", "!~"])
# any text, including quotes, backslashes, braces, commas and the word namespace
VALUES = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12) | st.sampled_from(
    ['"} or {namespace="other', "namespace", '\\"', "}", ",", '{a=~".*"}', "`"]
)
SPACE = st.sampled_from(["", " ", "  ", "\n", " # c{ }\n"])
DURATIONS = st.sampled_from(["5m", "1h30m", "30s", "1d", "100ms", "2w"])


def go_string(value: str, quote: str) -> str:
    if quote == "`" and "`" not in value:
        return f"`{value}`"
    if quote == "'":
        return "'" + json.dumps(value)[1:-1].replace('\\"', '"').replace("'", "\\'") + "'"
    return json.dumps(value)  # JSON escapes are valid Go escapes for PromQL strings


@st.composite
def matcher(draw: st.DrawFn) -> str:
    quote = draw(st.sampled_from(['"', "'", "`"]))
    return f"{draw(LABELS)}{draw(SPACE)}{draw(OPS)}{draw(SPACE)}{go_string(draw(VALUES), quote)}"


@st.composite
def selector(draw: st.DrawFn) -> str:
    name = draw(st.none() | METRICS)
    groups = draw(st.lists(st.lists(matcher(), min_size=0 if name else 1, max_size=3), min_size=1, max_size=2))
    if len(groups) > 1:
        groups = [g or [draw(matcher())] for g in groups]
    with_braces = name is None or draw(st.booleans()) or any(groups[0]) or len(groups) > 1
    text = name or ""
    if with_braces:
        parts = [",".join(g) + ("," if g and draw(st.booleans()) else "") for g in groups]
        text += draw(SPACE if name else st.just("")) + "{" + " or ".join(parts) + "}"
    if draw(st.booleans()):
        text += f"[{draw(DURATIONS)}]"
    if draw(st.booleans()):
        text += f" offset {draw(st.sampled_from(['', '-']))}{draw(DURATIONS)}"
    if draw(st.booleans()):
        text += f" @ {draw(st.sampled_from(['100', 'start()', 'end()', '1700000000.5']))}"
    return text


def expr(leaves: st.SearchStrategy[tuple[str, int]]) -> st.SearchStrategy[tuple[str, int]]:
    def extend(inner: st.SearchStrategy[tuple[str, int]]) -> st.SearchStrategy[tuple[str, int]]:
        def unary(fmt: str) -> st.SearchStrategy[tuple[str, int]]:
            return st.builds(lambda e, sp: (fmt.format(e=e[0], sp=sp), e[1]), inner, SPACE)

        def binary(op: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, int]]:
            return st.builds(
                lambda a, o, b, sp: (f"{a[0]}{sp or ' '}{o}{sp or ' '}{b[0]}", a[1] + b[1]), inner, op, inner, SPACE
            )

        return st.one_of(
            unary("rate({sp}{e}{sp})"),
            unary("sum by (le,{sp}job) ({e})"),
            unary("sum{sp}({e}) without (pod)"),
            unary("topk(3, {e})"),
            unary('label_replace({e}, "namespace", "$1", "a", "(.*)")'),
            unary("({e})"),
            unary("-{e}"),
            unary("max_over_time({e}[10m:1m])"),
            unary("histogram_quantile(0.99, {e})"),
            binary(st.sampled_from(["+", "/", "> bool", "and", "or", "unless", "atan2", "== on(le) group_left(a)"])),
        )

    return st.recursive(leaves, extend, max_leaves=6)


LEAVES = st.one_of(
    selector().map(lambda s: (s, 1)),
    st.sampled_from(["1", "0.5", "1e3", "0x1F", "Inf", "vector(1)", "time()", '"str"']).map(lambda s: (s, 0)),
)


def only_insertions(query: str, out: str) -> bool:
    """``out`` is ``query`` with nothing but the binder's matchers inserted."""
    i = j = 0
    while j < len(out):
        if i < len(query) and query[i] == out[j]:
            i, j = i + 1, j + 1
            continue
        for piece in (f"{{{B}}}", f",{B}", B):
            if out.startswith(piece, j):
                j += len(piece)
                break
        else:
            return False
    return i == len(query)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr(LEAVES))
def test_every_generated_selector_is_bound_and_nothing_else_changes(case: tuple[str, int]) -> None:
    query, count = case
    assert selectors(query) == count
    out = confine(query, NS)
    assert confine(out, NS) == out, "every selector carries the namespace afterwards"
    assert selectors(out) == count
    assert out.count(B) >= count
    assert only_insertions(query, out), "only the matcher was added"
    # the user's strings are all still there, byte for byte
    strings = [t.text for t in tokenize(query) if t.kind == "string"]
    assert [t.text for t in tokenize(out) if t.kind == "string" and t.text != f'"{NS}"'] == strings


@settings(max_examples=120, deadline=None)
@given(expr(LEAVES), st.sampled_from(["=~", "!=", "!~", "="]), st.sampled_from(["other", ".*", "shop|other", ""]))
def test_a_generated_namespace_matcher_other_than_ours_is_refused(case: tuple[str, int], op: str, value: str) -> None:
    query = f'{case[0]} + x{{a="1",namespace{op}{json.dumps(value)}}}'
    with pytest.raises(QueryNotConfined, match="namespace"):
        confine(query, NS)
