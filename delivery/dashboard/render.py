"""The dashboard's HTML, rendered on the server: the page, the list, one delivery in detail, the charts.

Every value from the cluster is escaped. The page's script (``static/dashboard.js``) replaces the
fragments (``#error``, ``#list``, ``#detail``) with the ones pushed over server-sent events.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

from delivery import output
from delivery.dashboard.data import Delivery, Snapshot

SHOWN = 300  # characters of an error shown for a delivery that cannot be rendered
VERBS = ("promote", "pause", "resume", "abort", "retry")  # the buttons, in the order shown
LIST_COLUMNS = ("DELIVERY", "STRATEGY", "PHASE", "STEP", "WEIGHT", "READY", "REVISION", "AGE")
POD_COLUMNS = ("VERSION", "REVISION", "REPLICASET", "IMAGES", "READY", "NOT READY", "RESTARTS")
VERB_HELP = {
    "promote": "move to the next step (passes a manual pause step)",
    "pause": "hold at the current step",
    "resume": "continue a paused delivery",
    "abort": "stop and put all traffic back on the stable version",
    "retry": "start a rolled-back or aborted delivery again",
}


def phase_class(phase: str) -> str:
    """The CSS class of a phase: the colour ``deliver status`` gives it (``output.PHASE_STYLE``)."""
    return f"c-{output.PHASE_STYLE.get(phase, 'none')}"


def page(snap: Snapshot, selected: str, token: str, read_only: bool) -> str:
    title = f"deliver: {selected}" if selected else f"deliver: {snap.scope}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="deliver-token" content="{escape(token)}">
<title>{escape(title)}</title>
<link rel="stylesheet" href="/static/dashboard.css">
</head>
<body data-selected="{escape(selected)}" data-read-only="{str(read_only).lower()}">
<header><a href="/" class="home">deliver</a> <span class="scope">{escape(snap.scope)}</span>
<span id="conn" class="conn">connecting…</span>{' <span class="ro">read-only</span>' if read_only else ""}</header>
<div id="notice" role="status"></div>
<div id="error">{error_html(snap)}</div>
<main>
<section id="list">{list_html(snap, selected)}</section>
<section id="detail">{detail_html(snap, selected, read_only)}</section>
</main>
<script src="/static/dashboard.js"></script>
</body></html>
"""


def error_html(snap: Snapshot) -> str:
    parts = []
    if snap.error:
        kind = "forbidden" if snap.forbidden else "unreachable"
        parts.append(f'<div class="error {kind}"><strong>Cannot read the cluster.</strong> {escape(snap.error)}</div>')
    for w in snap.warnings:
        parts.append(f'<div class="warning">{escape(w)}</div>')
    return "".join(parts)


def list_html(snap: Snapshot, selected: str) -> str:
    if snap.error:
        return '<p class="empty">No deliveries shown: the cluster could not be read (above).</p>'
    if not snap.deliveries:
        return f'<p class="empty">No deliveries found in {escape(snap.scope)}.</p>'
    rows = []
    for d in snap.deliveries:
        try:
            rows.append(list_row(snap, d, selected))
        except Exception as exc:  # one Deployment's bad data shows as its own error row, the rest render
            rows.append(broken_row(d, f"this delivery cannot be shown ({type(exc).__name__}: {exc})"))
    head = "".join(f"<th>{h}</th>" for h in LIST_COLUMNS)
    return f'<table class="deliveries"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def broken_row(d: Delivery, why: str) -> str:
    return (
        f'<tr data-key="{escape(d.key)}" class="broken"><td class="name"><a href="/?d={quote(d.key, safe="")}">'
        f'{escape(d.key)}</a></td><td colspan="{len(LIST_COLUMNS) - 1}" class="error">{escape(why[:SHOWN])}</td></tr>'
    )


def list_row(snap: Snapshot, d: Delivery, selected: str) -> str:
    s = d.status
    if s.get("error"):
        return broken_row(d, str(s["error"]))
    phase = s.get("phase", "Idle") if s["valid"] else "Invalid"
    age = output.age(snap.at - float(s["started"])) if s.get("started") else "-"
    chosen = ' class="selected"' if d.key == selected else ""
    return (
        f'<tr data-key="{escape(d.key)}"{chosen}>'
        f'<td class="name"><a href="/?d={quote(d.key, safe="")}">{escape(d.key)}</a></td>'
        f"<td>{escape(str(s.get('strategy', '')))}</td>"
        f'<td class="phase {phase_class(phase)}">{escape(phase)}</td>'
        f'<td class="step">{int(s.get("step", 0) or 0) + 1}</td>'
        f'<td class="weight">{escape(str(s.get("weight", 0)))}%</td>'
        f"<td>{s['ready']}/{s['replicas']}</td>"
        f'<td class="revision">{escape(str(s.get("revision") or s.get("target", "")))}</td>'
        f"<td>{escape(age)}</td></tr>"
    )


def detail_html(snap: Snapshot, selected: str, read_only: bool) -> str:
    if not selected:
        return '<p class="hint">Choose a delivery to see its steps, pods and evidence.</p>'
    d = snap.find(selected)
    if d is None:
        if snap.error:
            return ""
        return f'<p class="empty">No delivery {escape(selected)} in {escape(snap.scope)}.</p>'
    try:
        if d.status.get("error"):
            raise ValueError(d.status["error"])
        return delivery_html(snap, d, read_only)
    except Exception as exc:  # one Deployment's bad data: say so in its own detail, nothing else breaks
        why = str(exc) if d.status.get("error") else f"this delivery cannot be shown ({type(exc).__name__}: {exc})"
        return f'<h2>{escape(d.key)}</h2><div class="error broken">{escape(why[:SHOWN])}</div>'


def delivery_html(snap: Snapshot, d: Delivery, read_only: bool) -> str:
    s = d.status
    phase = s.get("phase", "Idle") if s["valid"] else "Invalid"
    parts = [
        f'<h2>{escape(d.key)} <span class="phase {phase_class(phase)}">{escape(phase)}</span></h2>',
        f'<p class="summary">strategy {escape(str(s.get("strategy", "")))} · step '
        f'<span class="step">{int(s.get("step", 0) or 0) + 1}</span> · weight '
        f'<span class="weight">{escape(str(s.get("weight", 0)))}%</span> · ready {s["ready"]}/{s["replicas"]}</p>',
    ]
    for p in s.get("problems") or []:
        parts.append(f'<div class="error invalid">invalid annotation, deliver takes no action: {escape(p)}</div>')
    if s.get("message"):
        parts.append(f'<p class="message">{escape(str(s["message"]))}</p>')
    if s.get("revision"):
        parts.append(
            f'<p class="revisions">revision {escape(str(s["revision"]))} (stable '
            f"{escape(str(s.get('stableRevision', '')))}, template {escape(str(s.get('target', '')))})</p>"
        )
    if s.get("pendingRequest"):
        parts.append(
            f'<p class="pending">pending request: {escape(str(s["pendingRequest"]))}'
            " (not yet taken by the controller)</p>"
        )
    if not read_only:
        parts.append(buttons_html(d, disabled=bool(snap.error)))
    parts.append(ladder_html(d))
    parts.append(versions_html(d))
    parts.append(verdicts_html(d))
    return "".join(parts)


def buttons_html(d: Delivery, disabled: bool = False) -> str:
    ns, name = d.status["namespace"], d.status["name"]
    off = " disabled" if disabled else ""
    return (
        '<div class="buttons">'
        + "".join(
            f'<button type="button" data-verb="{v}" data-ns="{escape(ns)}" data-name="{escape(name)}" '
            f'title="{escape(VERB_HELP[v])}"{off}>{v}</button>'
            for v in VERBS
        )
        + "</div>"
    )


def ladder_html(d: Delivery) -> str:
    if not d.ladder:
        return ""
    items = "".join(f'<li class="rung {r.where}">{i + 1}. {escape(r.label)}</li>' for i, r in enumerate(d.ladder))
    return f'<h3>Steps</h3><ol class="ladder">{items}</ol>'


def versions_html(d: Delivery) -> str:
    if not d.versions:
        return '<h3>Pods</h3><p class="empty">no running version</p>'
    rows = "".join(
        f'<tr class="version {v.role}"><td>{v.role}</td><td>{escape(v.revision)}</td><td>{escape(v.name)}</td>'
        f'<td>{escape(", ".join(v.images))}</td><td class="ready">{v.ready}</td>'
        f'<td class="notready">{v.not_ready}</td><td class="restarts">{v.restarts}</td></tr>'
        for v in d.versions
    )
    head = "".join(
        f"<th>{h}</th>" for h in ("VERSION", "REVISION", "REPLICASET", "IMAGES", "READY", "NOT READY", "RESTARTS")
    )
    return f'<h3>Pods</h3><table class="versions"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def verdicts_html(d: Delivery) -> str:
    s = d.status
    verdicts: list[dict[str, Any]] = list(s.get("verdicts") or [])
    running = s.get("running")
    if not verdicts and not running:
        return ""
    parts = ['<h3>Verdicts</h3><ul class="verdicts">']
    for v in verdicts:
        parts.append(verdict_item(v))
    if running:
        parts.append(verdict_item(running, now=True))
    parts.append("</ul>")
    forecast = forecast_html(s)
    if forecast:
        parts.append(forecast)
    charts = charts_html(verdicts + ([running] if running else []), s.get("looks"))
    if charts:
        parts.append(f'<h3>Evidence</h3><div class="charts">{charts}</div>')
    return "".join(parts)


def verdict_item(v: dict[str, Any], now: bool = False) -> str:
    outcome = str(v.get("outcome", ""))
    when = time.strftime("%H:%M:%S", time.localtime(float(v.get("at", 0) or 0)))
    checks = ((v.get("details") or {}).get("checks")) or []
    numbers = "".join(f"<li>{escape(check_numbers(c))}</li>" for c in checks)
    label = "now" if now else when
    return (
        f'<li class="verdict o-{escape(outcome)}"><span class="step">step {int(v.get("step", 0)) + 1}</span> '
        f'<span class="outcome">{escape(outcome)}</span> <span class="at">{escape(label)}</span> '
        f"{escape(str(v.get('summary', '')))}{'<ul class=numbers>' + numbers + '</ul>' if numbers else ''}</li>"
    )


def check_numbers(c: dict[str, Any]) -> str:
    """One check's numbers as the record keeps them (``CheckResult.to_dict``)."""
    n = c.get("n") or [0, 0]
    bits = [f"{c.get('name', '')}: {c.get('outcome', '')}"]
    for key, word in (("stat", "statistic"), ("e", "e-value"), ("p", "p-value"), ("effect", "effect")):
        if c.get(key) is not None:
            bits.append(f"{word} {c[key]}")
    bits.append(f"samples canary {n[0]} baseline {n[1]}")
    if c.get("msg"):
        bits.append(str(c["msg"]))
    return " · ".join(bits)


def forecast_html(s: dict[str, Any]) -> str:
    verdicts = s.get("verdicts") or []
    if not verdicts or s.get("phase") not in ("Progressing", "Paused"):
        return ""
    forecasts = (verdicts[-1].get("details") or {}).get("forecast") or []
    if not forecasts:
        return ""
    from delivery.analysis.forecast import Forecast

    items = "".join(
        f"<li>{escape(f.check)}: {escape(f.text())}</li>" for f in (Forecast.from_dict(x) for x in forecasts)
    )
    return f'<h3>Time to verdict</h3><ul class="forecast">{items}</ul>'


@dataclass(frozen=True)
class Point:
    """One check's numbers at one analysed window (a look or a step's verdict), as charted."""

    x: float  # when (end of the analysed window)
    y: float  # evidence (``evidence``)
    outcome: str
    canary: float | None = None  # canary rate
    baseline: float | None = None  # baseline rate
    bound: float | None = None  # the judge's upper bound on the effect (rate ratio - 1)

    @property
    def canary_bound(self) -> float | None:
        """The canary's rate the effect bound still allows: baseline x (1 + bound)."""
        if self.baseline is None or self.bound is None or not math.isfinite(self.bound):
            return None
        return max(0.0, self.baseline * (1.0 + self.bound))


def _rates(c: dict[str, Any]) -> tuple[float | None, float | None]:
    rate = c.get("rate")
    if isinstance(rate, list | tuple) and len(rate) == 2:
        try:
            return float(rate[0]), float(rate[1])
        except (TypeError, ValueError):
            pass
    return None, None


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _log10(e: float | None) -> float | None:
    if e is None or e <= 0 or not math.isfinite(e):
        return None
    return math.log10(e)


def evidence_series(
    verdicts: list[dict[str, Any]], looks: dict[str, Any] | None = None
) -> tuple[dict[str, list[Point]], dict[str, float]]:
    """Per check, one point per analysed window: the record's look points (``looks``: the newest of
    this delivery) and the verdicts' checks not already among them; and per check the log10 of the
    e-value at which it fails (its ``fail_at``; none when the record does not say)."""
    series: dict[str, list[Point]] = {}
    thresholds: dict[str, float] = {}
    for name, rows in (looks or {}).items():
        for row in rows or ():
            if not isinstance(row, list | tuple) or len(row) < 7:
                continue
            y = _log10(_float(row[3]))
            at = _float(row[0])
            if y is None or at is None:
                continue
            series.setdefault(str(name), []).append(
                Point(at, y, str(row[2]), _float(row[4]), _float(row[5]), _float(row[6]))
            )
    looked = {name: [p.x for p in points] for name, points in series.items()}
    for v in verdicts:
        details = v.get("details") or {}
        at = float(v.get("at", 0) or 0)
        window = details.get("window") or [0, at]
        for c in details.get("checks") or []:
            name = str(c.get("name", ""))
            bar = fail_threshold(c)
            if bar is not None:
                thresholds[name] = bar
            y = evidence(c)
            if y is None:
                continue
            if any(abs(x - at) < 0.1 for x in looked.get(name, ())):
                continue  # this verdict is one of the record's look points
            rc, rb = _rates(c)
            series.setdefault(name, []).append(
                Point(float(window[-1]), y, str(c.get("outcome", "")), rc, rb, _float(c.get("bound")))
            )
    for points in series.values():
        points.sort(key=lambda p: p.x)
    return series, thresholds


def charts_html(verdicts: list[dict[str, Any]], looks: dict[str, Any] | None = None) -> str:
    """Per analysed check: its evidence at the end of each analysed window the record keeps, coloured
    by outcome, against the e-value at which it fails; and its canary vs baseline rate with the
    judge's bound."""
    series, thresholds = evidence_series(verdicts, looks)
    out = []
    for name, points in sorted(series.items()):
        if not points:
            continue
        out.append(chart_svg(name, points, thresholds.get(name)))
        rates = rates_svg(name, points)
        if rates:
            out.append(rates)
    return "".join(out)


def fail_threshold(c: dict[str, Any]) -> float | None:
    """log10 of the e-value at which the check fails (``fail_at`` in its numbers), else None."""
    return _log10(_float(c.get("fail_at")))


def evidence(c: dict[str, Any]) -> float | None:
    """A check's evidence on one scale: log10 of its e-value (the judges' evidence against the
    baseline, which spans hundreds of decades), else its statistic; None when it has neither."""
    try:
        if c.get("e") is not None:
            e = float(c["e"])
            y = math.log10(e) if e > 0 else None
        else:
            y = float(c["stat"]) if c.get("stat") is not None else None
    except (TypeError, ValueError, OverflowError):
        return None
    return y if y is not None and math.isfinite(y) else None


def chart_svg(
    name: str,
    points: list[Point],
    threshold: float | None = None,
    width: int = 360,
    height: int = 140,
) -> str:
    pad = 28
    xs = [p.x for p in points]
    ys = [p.y for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min([0.0, *ys]), max([0.0, *ys, *([threshold] if threshold is not None else [])])
    if y1 == y0:
        y1 = y0 + 1.0

    def sx(x: float) -> float:
        return pad + (x - x0) / ((x1 - x0) or 1.0) * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)

    line = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in points)
    bar = ""
    if threshold is not None:
        bar = (
            f'<line class="threshold" x1="{pad}" y1="{sy(threshold):.1f}" x2="{width - pad}" y2="{sy(threshold):.1f}"/>'
            f'<text class="tick" x="{width - pad}" y="{sy(threshold) - 3:.1f}" text-anchor="end">'
            f"fails at e ≥ {10**threshold:.3g}</text>"
        )
    dots = "".join(
        f'<circle class="point o-{escape(p.outcome)}" cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="3.5">'
        f"<title>{p.y:g} ({escape(p.outcome)})</title></circle>"
        for p in points
    )
    return (
        f'<figure class="chart" data-check="{escape(name)}">'
        f"<figcaption>{escape(name)}: log10 e-value (else statistic), {len(points)} analysed windows</figcaption>"
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<line class="axis" x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}"/>'
        f'<text x="2" y="{pad}" class="tick">{y1:.3g}</text><text x="2" y="{height - pad}" class="tick">{y0:.3g}</text>'
        f'<polyline class="series" points="{line}"/>{dots}{bar}</svg></figure>'
    )


def _pct(v: float) -> str:
    return f"{100 * v:.3g}%"


def rates_svg(name: str, points: list[Point], width: int = 360, height: int = 140) -> str:
    """Canary (dots) vs baseline (line) rate at each analysed window, with a whisker from the
    canary's rate up to the rate the judge's effect bound still allows; empty without rates."""
    pts = [p for p in points if p.canary is not None and p.baseline is not None]
    if not pts:
        return ""
    pad = 28
    x0, x1 = min(p.x for p in pts), max(p.x for p in pts)
    tops = [p.canary_bound for p in pts if p.canary_bound is not None]
    y1 = max([*(p.canary or 0.0 for p in pts), *(p.baseline or 0.0 for p in pts)])
    if tops:  # a bound far above the rates would flatten them: cap the scale at 3x their top
        y1 = max(y1, min(max(tops), 3 * y1 if y1 > 0 else max(tops)))
    y1 = y1 or 1.0

    def sx(x: float) -> float:
        return pad + (x - x0) / ((x1 - x0) or 1.0) * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - min(y, y1) / y1 * (height - 2 * pad)

    baseline = " ".join(f"{sx(p.x):.1f},{sy(p.baseline or 0.0):.1f}" for p in pts)
    marks = []
    for p in pts:
        canary = p.canary or 0.0
        top = p.canary_bound
        title = f"canary {_pct(canary)} vs baseline {_pct(p.baseline or 0.0)}"
        if top is not None:
            title += f", effect bound {p.bound:+.0%} (canary ≤ {_pct(top)})"
            marks.append(
                f'<line class="bound" x1="{sx(p.x):.1f}" y1="{sy(canary):.1f}" x2="{sx(p.x):.1f}" y2="{sy(top):.1f}"/>'
            )
        b = sy(p.baseline or 0.0)  # a tick too: one window's line alone would not show
        marks.append(
            f'<line class="baseline" x1="{sx(p.x) - 6:.1f}" y1="{b:.1f}" x2="{sx(p.x) + 6:.1f}" y2="{b:.1f}"/>'
        )
        marks.append(
            f'<circle class="rate o-{escape(p.outcome)}" cx="{sx(p.x):.1f}" cy="{sy(canary):.1f}" r="3">'
            f"<title>{escape(title)}</title></circle>"
        )
    return (
        f'<figure class="chart rates" data-check="{escape(name)}">'
        f"<figcaption>{escape(name)}: canary (dots) vs baseline (line) rate, whisker to the bound, "
        f"{len(pts)} analysed windows</figcaption>"
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<line class="axis" x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}"/>'
        f'<text x="2" y="{pad}" class="tick">{_pct(y1)}</text><text x="2" y="{height - pad}" class="tick">0%</text>'
        f'<polyline class="baseline" points="{baseline}"/>{"".join(marks)}</svg></figure>'
    )
