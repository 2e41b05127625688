"""Namespace confinement of PromQL: every series selector is bound to one namespace.

Tenants write their own PromQL (custom checks), and the built-in templates are PromQL too. Before a
query is sent, :func:`confine` finds every vector and matrix selector (``metric``,
``metric{...}``, ``{...}``, each alternative of ``{a="1" or b="2"}``) and adds
``namespace="<ns>"`` to it, so whatever the query computes (``label_replace`` tricks included) it
reads only that namespace's series. A selector that already matches ``namespace`` must match it
with ``=`` and the same namespace; another namespace, a regex (``=~``/``!~``) or a negative
(``!=``) matcher on ``namespace`` is refused with :class:`QueryNotConfined`, as is text that
cannot be tokenized (nothing unparsed is ever sent).

The rest of the query is left byte for byte as written: the matcher is inserted at token
boundaries, so the user's strings, escapes, durations, ``offset``/``@`` and subqueries are never
re-serialised. (The ``promql-parser`` package was tried for this: its printer drops string
escapes, ``x{a="q\\"x"}`` comes back as ``x{a="q"x"}``, which would let a value break out.)

A small tokenizer is enough because what decides whether an identifier is a selector is local:
an identifier followed by ``(`` is a function or aggregation; the identifiers after ``by``,
``without``, ``on``, ``ignoring``, ``group_left`` and ``group_right`` in parentheses are label
names; ``and``/``or``/``unless``/``atan2``/``bool``/``offset`` are keywords; ``inf``/``nan`` are
numbers; everything inside ``[...]`` is a duration or a subquery's range and step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from delivery.errors import QueryNotConfined

NAMESPACE_LABEL = "namespace"
MAX_QUERY_LENGTH = 16 * 1024

AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)
NUMBER_WORDS = frozenset({"inf", "nan"})
# functions that read series the query does not name: refused (info() joins target_info implicitly)
REFUSED_FUNCTIONS = frozenset({"info"})


@dataclass(frozen=True)
class Token:
    kind: str  # ident | string | number | duration | op | punct | space | comment
    text: str
    start: int
    end: int


_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("space", re.compile(r"[ \t\r\n]+")),
    ("comment", re.compile(r"#[^\n]*")),
    ("string", re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`[^`]*`')),
    ("duration", re.compile(r"(?:[0-9]+(?:ms|s|m|h|d|w|y))+(?![A-Za-z0-9_.])")),
    (
        "number",
        re.compile(r"(?:0[xX][0-9a-fA-F]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(?![A-Za-z0-9_.])"),
    ),
    ("ident", re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")),
    ("op", re.compile(r"=~|!~|!=|==|<=|>=|[-+*/%^<>=@]")),
    ("punct", re.compile(r"[{}()\[\],:]")),
)
# inside [...]: durations, numbers, ':' and arithmetic on them; never an identifier
_BRACKET_PATTERNS = tuple(p for p in _PATTERNS if p[0] != "ident")
# inside {...}: label names cannot hold ':'
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _refuse(query: str, problem: str) -> QueryNotConfined:
    shown = " ".join(query.split())
    shown = shown if len(shown) <= 200 else shown[:197] + "..."
    return QueryNotConfined(f"{problem}: {shown}")


def tokenize(query: str) -> list[Token]:
    """PromQL's tokens (with spaces and comments, so the text can be put back together exactly)."""
    if len(query) > MAX_QUERY_LENGTH:
        raise _refuse(query, f"the query is longer than {MAX_QUERY_LENGTH} characters")
    tokens: list[Token] = []
    pos, depth = 0, 0  # depth: inside [...] (durations and subquery steps)
    braces = 0
    while pos < len(query):
        patterns = _BRACKET_PATTERNS if depth else _PATTERNS
        for kind, pattern in patterns:
            if braces and kind == "ident":
                m = _LABEL_NAME.match(query, pos)
            else:
                m = pattern.match(query, pos)
            if m and m.end() > pos:
                text = m.group(0)
                tokens.append(Token(kind, text, pos, m.end()))
                if text == "[":
                    depth += 1
                elif text == "]":
                    depth -= 1
                elif text == "{":
                    braces += 1
                elif text == "}":
                    braces -= 1
                if depth < 0 or braces < 0 or braces > 1 or (depth and braces):
                    raise _refuse(query, f"unbalanced or nested brackets at offset {pos}")
                pos = m.end()
                break
        else:
            raise _refuse(query, f"cannot read the query at offset {pos} ({query[pos : pos + 10]!r})")
    if depth or braces:
        raise _refuse(query, "unbalanced brackets")
    return tokens


def unquote(text: str) -> str:
    """The value of a PromQL string token (Go escapes in "..." and '...', none in `...`)."""
    if text[0] == "`":
        return text[1:-1]
    body, out, i = text[1:-1], [], 0
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e in "\"'":
            out.append(e)
            i += 2
        elif e in "xuU" or e.isdigit():
            width = {"x": 2, "u": 4, "U": 8}.get(e, 3)
            digits = body[i + 2 : i + 2 + width] if e in "xuU" else body[i + 1 : i + 4]
            try:
                out.append(chr(int(digits, 16 if e in "xuU" else 8)))
            except ValueError:
                raise ValueError(f"bad escape in {text}") from None
            i += (2 if e in "xuU" else 1) + width
        else:
            raise ValueError(f"unknown escape \\{e} in {text}")
    return "".join(out)


def _significant(tokens: list[Token], i: int) -> int:
    """Index of the first token at or after ``i`` that is not a space or comment (len: none)."""
    while i < len(tokens) and tokens[i].kind in ("space", "comment"):
        i += 1
    return i


def _matcher_groups(
    query: str, tokens: list[Token], open_: int, namespace: str | None
) -> tuple[int, list[tuple[int, bool, bool]]]:
    """The matchers of the braces opening at ``open_``: the index of ``}`` and, per ``or``
    alternative, (index of the token ending it: ``or`` or ``}``, whether it ends in a comma or is
    empty, whether it already matches our namespace). Checks every ``namespace`` matcher."""
    groups: list[tuple[int, bool, bool]] = []
    i = _significant(tokens, open_ + 1)
    empty, comma, bound = True, False, False
    while True:
        if i >= len(tokens):
            raise _refuse(query, "unclosed {")
        t = tokens[i]
        if t.text == "}" or (t.kind == "ident" and t.text.lower() == "or" and not empty):
            groups.append((i, comma or empty, bound))
            if t.text == "}":
                return i, groups
            empty, comma, bound = True, False, False
            i = _significant(tokens, i + 1)
            continue
        if t.kind not in ("ident", "string"):
            raise _refuse(query, f"expected a label matcher at offset {t.start}, found {t.text!r}")
        name = t.text if t.kind == "ident" else _unquoted(query, t)
        j = _significant(tokens, i + 1)
        if j < len(tokens) and tokens[j].kind == "op" and tokens[j].text in ("=", "!=", "=~", "!~"):
            op = tokens[j].text
            k = _significant(tokens, j + 1)
            if k >= len(tokens) or tokens[k].kind != "string":
                raise _refuse(query, f"a label matcher without a quoted value at offset {tokens[j].start}")
            value = _unquoted(query, tokens[k])
            if name == NAMESPACE_LABEL:
                bound = _check_namespace(query, op, value, namespace) or bound
            after = _significant(tokens, k + 1)
        elif t.kind == "string":  # {"metric.name"}: a quoted metric name (Prometheus 3)
            after = j
        else:
            raise _refuse(query, f"label {name!r} without a matcher at offset {t.start}")
        empty, comma = False, False
        if after < len(tokens) and tokens[after].text == ",":
            comma = True
            after = _significant(tokens, after + 1)
        elif after < len(tokens) and not (tokens[after].text == "}" or tokens[after].text.lower() == "or"):
            raise _refuse(query, f"expected ',' or '}}' at offset {tokens[after].start}")
        i = after


def _unquoted(query: str, t: Token) -> str:
    try:
        return unquote(t.text)
    except (ValueError, IndexError):
        raise _refuse(query, f"cannot read the string at offset {t.start}") from None


def _check_namespace(query: str, op: str, value: str, namespace: str | None) -> bool:
    if namespace is None:  # only counting selectors
        return False
    if op != "=":
        raise _refuse(
            query,
            f'a {op} matcher on "namespace": a query reads only its own namespace; write '
            'namespace="{namespace}" or leave the matcher out (deliver adds it)',
        )
    if value != namespace:
        raise _refuse(
            query,
            f'the query names namespace "{value}": a query reads only its own namespace; write '
            'namespace="{namespace}" or leave the matcher out (deliver adds it)',
        )
    return True


def selectors(query: str) -> int:
    """How many series selectors ``query`` has (for tests and the docs)."""
    return len(_plan(query, None)[1])


def confine(query: str, namespace: str) -> str:
    """``query`` with ``namespace="<namespace>"`` in every series selector; QueryNotConfined when it
    names another namespace, matches ``namespace`` by regex or negation, or cannot be read."""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
        raise QueryNotConfined(f"{namespace!r} is not a namespace name")
    inserts, _ = _plan(query, namespace)
    out, last = [], 0
    for pos, text in sorted(inserts):
        out.append(query[last:pos])
        out.append(text)
        last = pos
    out.append(query[last:])
    return "".join(out)


COMPARISONS = frozenset({"==", "!=", "<", ">", "<=", ">="})
BINARY_KEYWORDS = frozenset({"and", "or", "unless", "atan2"})
BINARY_OPERATORS = COMPARISONS | BINARY_KEYWORDS | {"+", "-", "*", "/", "%", "^", "bool"}


def _plan(query: str, namespace: str | None) -> tuple[list[tuple[int, str]], list[int]]:
    """(insertions (offset, text), offsets of the selectors found).

    Prometheus takes a keyword where an operand is expected as a metric name (``rate(offset[5m])``
    reads the series named ``offset``), so a keyword is an operator only where an operator can be:
    ``and``/``or``/``unless``/``atan2``/``offset`` after an operand, ``bool`` after a comparison,
    ``group_left``/``group_right`` after ``on(...)``/``ignoring(...)``. Elsewhere it is a
    selector, and bound like any other."""
    tokens = tokenize(query)
    inserts: list[tuple[int, str]] = []
    found: list[int] = []
    i = _significant(tokens, 0)
    if i >= len(tokens):
        raise _refuse(query, "empty query")
    operand = True  # an operand is expected next (start, after '(', ',', an operator, ...)
    prev = ""  # the previous significant token's text (lowercased words)
    after_matching = False  # the previous token closed an on(...)/ignoring(...) list
    while i < len(tokens):
        t = tokens[i]
        matching = False
        if t.text == "{":
            found.append(t.start)
            i = _bind_braces(query, tokens, i, namespace, inserts)
            operand = False
        elif t.kind == "ident":
            modifier = _modifier(query, tokens, i, operand, prev, after_matching)
            if modifier is not None:
                i, operand, matching = modifier
            elif (expects := _operand_after_word(query, tokens, i, operand, prev)) is not None:
                operand = expects
            else:  # a metric name (keywords included, where an operand is expected): its selector
                found.append(t.start)
                i = _bind_name(query, tokens, i, namespace, inserts)
                operand = False
        elif t.kind in ("number", "duration", "string") or t.text in (")", "]"):
            operand = False
        else:  # '(', '[', ',', ':', and every operator
            operand = True
        prev = tokens[i].text.lower()
        after_matching = matching
        i = _significant(tokens, i + 1)
    return inserts, found


def _following(tokens: list[Token], i: int) -> tuple[int, str]:
    """The index and text of the significant token after ``i`` (``len(tokens)`` and "" at the end)."""
    nxt = _significant(tokens, i + 1)
    return nxt, tokens[nxt].text if nxt < len(tokens) else ""


def _modifier(
    query: str, tokens: list[Token], i: int, was_operand: bool, prev: str, after_matching: bool
) -> tuple[int, bool, bool] | None:
    """The identifier at ``i`` as a modifier with its label list: ``by``/``without`` after an aggregation,
    ``on``/``ignoring`` after a binary operator, ``group_left``/``group_right`` after ``on(...)``.
    Returns (the index of its last token, whether an operand is expected next, whether it closed an
    ``on(...)``/``ignoring(...)`` list); None when it is no modifier here."""
    word = tokens[i].text.lower()
    nxt, nxt_text = _following(tokens, i)
    if word in ("group_left", "group_right") and after_matching:
        if nxt_text == "(":
            i = _skip_label_list(query, tokens, nxt)
        return i, True, False
    if (word in ("by", "without") and not was_operand) or (word in ("on", "ignoring") and prev in BINARY_OPERATORS):
        if nxt_text != "(":
            raise _refuse(query, f"{tokens[i].text} needs a label list in parentheses")
        i = _skip_label_list(query, tokens, nxt)
        matching = word in ("on", "ignoring")
        # after on(...): the right operand (or group_left); after by(...): the aggregation's
        # parenthesised body, or nothing more of it
        return i, matching, matching
    if word in ("by", "without", "on", "ignoring"):
        raise _refuse(query, f"{tokens[i].text!r} where a series or value is expected")
    return None


def _operand_after_word(query: str, tokens: list[Token], i: int, was_operand: bool, prev: str) -> bool | None:
    """Whether an operand is expected after the identifier at ``i`` (no modifier): yes after a keyword
    operator or a function's name, no after a number or an aggregation followed by its by/without;
    None when the identifier is a metric name."""
    word = tokens[i].text.lower()
    nxt, nxt_text = _following(tokens, i)
    if word in BINARY_KEYWORDS and not was_operand:
        return True
    if word == "offset" and not was_operand:
        return True  # a duration follows
    if word == "bool" and prev in COMPARISONS:
        return True
    if word in NUMBER_WORDS:
        return False
    if nxt_text == "(":
        if word in REFUSED_FUNCTIONS:
            raise _refuse(query, f"{tokens[i].text}() reads series the query does not name")
        return True
    if word in AGGREGATIONS and nxt < len(tokens) and tokens[nxt].text.lower() in ("by", "without"):
        return False  # so the by/without after it is a modifier
    return None


def _bind_name(query: str, tokens: list[Token], i: int, namespace: str | None, inserts: list[tuple[int, str]]) -> int:
    """Bind the selector of the metric name at ``i`` (with its braces, if any); the index of its last token."""
    nxt, nxt_text = _following(tokens, i)
    if nxt_text == "{":
        return _bind_braces(query, tokens, nxt, namespace, inserts)
    matcher = f'{NAMESPACE_LABEL}="{namespace}"'
    inserts.append((tokens[i].end, "{" + matcher + "}"))
    return i


def _bind_braces(
    query: str, tokens: list[Token], open_: int, namespace: str | None, inserts: list[tuple[int, str]]
) -> int:
    matcher = f'{NAMESPACE_LABEL}="{namespace}"'
    close, groups = _matcher_groups(query, tokens, open_, namespace)
    after = _significant(tokens, close + 1)
    if after < len(tokens) and tokens[after].text == "{":
        raise _refuse(query, f"a second set of label matchers at offset {tokens[after].start}")
    for end, ends_open, bound in groups:
        if bound:
            continue
        # insert right after the group's last significant token (before spaces, `or` and `}`)
        k = end - 1
        while tokens[k].kind in ("space", "comment"):
            k -= 1
        inserts.append((tokens[k].end, ("" if ends_open else ",") + matcher))
    return close


def _skip_label_list(query: str, tokens: list[Token], open_: int) -> int:
    """Index of the ``)`` closing a ``by (...)``-style label list; only names and commas inside."""
    i = _significant(tokens, open_ + 1)
    while i < len(tokens) and tokens[i].text != ")":
        if tokens[i].kind not in ("ident", "string") and tokens[i].text != ",":
            raise _refuse(query, f"unexpected {tokens[i].text!r} in a label list at offset {tokens[i].start}")
        i = _significant(tokens, i + 1)
    if i >= len(tokens):
        raise _refuse(query, "unclosed label list")
    return i
