"""Metric check declarations: parsing ``deliver.dev/analysis*`` annotations into typed checks.

A check compares the canary against the baseline on one metric.  Built-in checks (``error-rate``,
``latency``) come from templates over common metric shapes; custom checks take their PromQL from a
ConfigMap named by ``deliver.dev/analysis-config``.  PromQL templates carry placeholders such as
``{hash}`` that are substituted at query time by :func:`render_query`, which refuses any value that
could break out of a label matcher instead of interpolating it.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from delivery import duration
from delivery.analysis.promql import confine
from delivery.errors import KubeError, QueryError, SpecError

PREFIX = "deliver.dev/"
KEY_CHECKS = PREFIX + "analysis"
KEY_METRICS = PREFIX + "analysis-metrics"
KEY_CONFIG = PREFIX + "analysis-config"
KEY_ALPHA = PREFIX + "analysis-alpha"
KEY_RESOLUTION = PREFIX + "analysis-resolution"
KEY_CHECK_OPTIONS = PREFIX + "analysis."  # + <check name>

KINDS = ("errors", "latency")
DIRECTIONS = ("increase", "decrease", "either")
METRIC_FAMILIES = ("http", "envoy")
BUILTIN_CHECKS = ("error-rate", "latency")

DEFAULT_ALPHA = 0.05
DEFAULT_MAX_EFFECT = 0.5
DEFAULT_MIN_SAMPLES = 1000
DEFAULT_QUANTILE = 0.99
DEFAULT_NEGLIGIBLE_RATE = 0.001
# A rate above this is not negligible: for a metric whose "bad" share is naturally high, bound the
# ratio with max-effect instead.  (Allowing 1.0 passed a canary at 2 % errors beside 1.4 %.)
MAX_NEGLIGIBLE_RATE = 0.1
# Per-window increments are fetched at this resolution (seconds); see docs/analysis.md.
DEFAULT_RESOLUTION = 60.0
MIN_RESOLUTION, MAX_RESOLUTION = 1.0, 3600.0
NUMBER_TEXT = 32  # characters of a number in an annotation (0.0001, 1e-3, ...): more is refused unparsed
SHOWN = 80  # characters of a value quoted in a message

# Keys a check of each kind needs; every query is written once, arm-neutral ({hash}, {service}),
# and evaluated once for the canary and once for the baseline.
QUERY_KEYS: dict[str, tuple[str, ...]] = {"errors": ("total", "errors"), "latency": ("buckets",)}

# Placeholders allowed in PromQL templates.  {hash} and {service} are the arm being queried
# (canary or baseline); the others are the same for both arms.
PLACEHOLDERS = (
    "namespace",
    "name",
    "canary_hash",
    "baseline_hash",
    "canary_service",
    "baseline_service",
    "hash",
    "service",
    "window",
)

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
_CONFIGMAP_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A value substituted into a template must be a plain token: it can sit inside "..." in a label
# matcher or form a duration, and can never close the string, the matcher or the selector.
_SAFE_VALUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,252}$")


@dataclass(frozen=True)
class CheckSpec:
    """One declared metric check (canary vs baseline)."""

    name: str
    kind: str  # "errors" (counts) | "latency" (distribution)
    template: str | None  # built-in template ("http:error-rate", ...) or None for custom
    queries: dict[str, str] = field(hash=False, compare=True)
    direction: str = "increase"  # which change is bad
    max_effect: float = DEFAULT_MAX_EFFECT  # allowed relative effect size
    critical: bool = True
    min_samples: int = DEFAULT_MIN_SAMPLES  # per arm, before a pass is possible
    alpha: float = DEFAULT_ALPHA  # family-wise false-rollback rate of the whole analysis
    quantile: float = DEFAULT_QUANTILE  # latency: the tail quantile watched for exceedances
    negligible_rate: float = DEFAULT_NEGLIGIBLE_RATE  # errors: a canary rate surely below this passes
    resolution: float = DEFAULT_RESOLUTION  # seconds per window of the stratified judges


def _http(metric_filter: str) -> str:
    return f'namespace="{{namespace}}",pod_template_hash="{{hash}}"{metric_filter}'


def _envoy(metric_filter: str) -> str:
    return f'namespace="{{namespace}}",envoy_cluster_name="{{service}}"{metric_filter}'


TEMPLATES: dict[str, dict[str, str]] = {
    "http:error-rate": {
        "total": "sum(increase(http_requests_total{" + _http("") + "}[{window}]))",
        "errors": "sum(increase(http_requests_total{" + _http(',code=~"5..') + '"}[{window}]))',
    },
    "http:latency": {
        "buckets": "sum by (le) (increase(http_request_duration_seconds_bucket{" + _http("") + "}[{window}]))",
    },
    # Envoy's per-cluster stats carry the Service's namespace as the `namespace` label, added at
    # scrape time (docs/analysis.md#envoy-metrics-and-the-namespace-label): cluster names are
    # Service names, and two namespaces may have a Service of the same name.
    "envoy:error-rate": {
        "total": "sum(increase(envoy_cluster_upstream_rq_total{" + _envoy("") + "}[{window}]))",
        "errors": "sum(increase(envoy_cluster_upstream_rq_xx{"
        + _envoy(',envoy_response_code_class="5"')
        + "}[{window}]))",
    },
    "envoy:latency": {
        "buckets": "sum by (le) (increase(envoy_cluster_upstream_rq_time_bucket{" + _envoy("") + "}[{window}]))",
    },
}


def placeholders_in(query: str) -> set[str]:
    """Names of the ``{placeholder}`` tokens in a PromQL template."""
    return set(_PLACEHOLDER_RE.findall(query))


def validate_template(key: str, query: str) -> None:
    """Raise SpecError if the template is empty or names an unknown placeholder."""
    if not query.strip():
        raise SpecError(key, "empty PromQL")
    unknown = sorted(placeholders_in(query) - set(PLACEHOLDERS))
    if unknown:
        raise SpecError(
            key,
            f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
            f"allowed: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}",
        )
    if query.count("(") != query.count(")") or query.count("[") != query.count("]"):
        raise SpecError(key, "unbalanced brackets in PromQL")
    # every selector will be bound to the Deployment's namespace (delivery/analysis/promql.py):
    # refuse now, offline too, what would try to read another one
    try:
        confine(render_query(query, _VALIDATION_VALUES), _VALIDATION_VALUES["namespace"])
    except QueryError as exc:
        raise SpecError(key, str(exc)) from None


# stand-ins for the placeholders when a template is checked before any target is known
_VALIDATION_VALUES = {p: "deliver-validate" for p in PLACEHOLDERS} | {"window": "60s"}


def safe_value(name: str, value: str) -> str:
    """Return ``value`` if it can be substituted into PromQL without escaping; raise QueryError."""
    if not _SAFE_VALUE_RE.match(value):
        raise QueryError(
            f"refusing to substitute placeholder {{{name}}} = {_shown(value)}: only letters, digits and "
            "._:/- are allowed (a quote, backslash, brace or newline could break out of a label matcher)"
        )
    return value


def render_query(template: str, values: Mapping[str, str]) -> str:
    """Substitute ``{placeholder}`` tokens; every used value is checked by :func:`safe_value`.

    Only known placeholders are touched (PromQL's own braces stay as they are); a placeholder
    without a value, or with an empty or unsafe value, raises QueryError.
    """

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in PLACEHOLDERS:
            return m.group(0)
        if key not in values or values[key] == "":
            raise QueryError(f"placeholder {{{key}}} has no value for this target")
        return safe_value(key, str(values[key]))

    return _PLACEHOLDER_RE.sub(sub, template)


_REPR = reprlib.Repr()
_REPR.maxstring = SHOWN


def _shown(value: object) -> str:
    """A value as quoted in a message: repr, at most ``SHOWN`` characters of it."""
    return _REPR.repr(value)


def _float(key: str, text: str, lo: float, hi: float, lo_open: bool = True) -> float:
    if len(text) > NUMBER_TEXT:
        raise SpecError(key, f"{_shown(text)} is not a number of at most {NUMBER_TEXT} characters")
    try:
        v = float(text)
    except ValueError:
        raise SpecError(key, f"{_shown(text)} is not a number") from None
    if not math.isfinite(v) or v > hi or v < lo or (lo_open and v == lo):
        bound = "(" if lo_open else "["
        raise SpecError(key, f"{_shown(text)} must be in {bound}{lo}, {hi}]")
    return v


def parse_resolution(text: str) -> float:
    """``deliver.dev/analysis-resolution``: a duration in the Kubernetes form (``90s``, ``2m``,
    ``1m30s``) in [1s, 1h]; raise SpecError otherwise."""
    try:
        seconds = duration.seconds(text)
    except duration.DurationError as exc:
        raise SpecError(KEY_RESOLUTION, f"{_shown(text)} {exc}") from None
    if not MIN_RESOLUTION <= seconds <= MAX_RESOLUTION:
        raise SpecError(KEY_RESOLUTION, f"{_shown(text)} must be between 1s and 1h")
    return seconds


def _options(key: str, text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise SpecError(key, f"{_shown(part)} is not key=value")
        k, v = (s.strip() for s in part.split("=", 1))
        if k in out:
            raise SpecError(key, f"option {_shown(k)} given twice")
        out[k] = v
    return out


_BOOL = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_OPTION_NAMES = ("kind", "direction", "max-effect", "critical", "min-samples", "quantile", "negligible-rate")


def _apply_options(spec: CheckSpec, key: str, opts: Mapping[str, str]) -> CheckSpec:
    unknown = sorted(set(opts) - set(_OPTION_NAMES))
    if unknown:
        raise SpecError(key, f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(_OPTION_NAMES)}")
    changes: dict[str, object] = {}
    if "kind" in opts:
        if opts["kind"] not in KINDS:
            raise SpecError(key, f"kind={_shown(opts['kind'])} must be one of {', '.join(KINDS)}")
        if spec.template is not None and opts["kind"] != spec.kind:
            raise SpecError(key, f"built-in check {spec.name} is of kind {spec.kind}")
        changes["kind"] = opts["kind"]
    if "direction" in opts:
        if opts["direction"] not in DIRECTIONS:
            raise SpecError(key, f"direction={_shown(opts['direction'])} must be one of {', '.join(DIRECTIONS)}")
        changes["direction"] = opts["direction"]
    if "max-effect" in opts:
        changes["max_effect"] = _float(key, opts["max-effect"], 0.0, 100.0)
    if "critical" in opts:
        v = opts["critical"].lower()
        if v not in _BOOL:
            raise SpecError(key, f"critical={_shown(opts['critical'])} must be true or false")
        changes["critical"] = _BOOL[v]
    if "min-samples" in opts:
        changes["min_samples"] = _min_samples(key, opts["min-samples"])
    if "quantile" in opts:
        changes["quantile"] = _float(key, opts["quantile"], 0.5, 0.9999, lo_open=False)
    if "negligible-rate" in opts:
        changes["negligible_rate"] = _float(key, opts["negligible-rate"], 0.0, MAX_NEGLIGIBLE_RATE, lo_open=False)
    return replace(spec, **changes)  # type: ignore[arg-type]


def _min_samples(key: str, text: str) -> int:
    """The ``min-samples`` option: a whole number in 1..10**12, of at most NUMBER_TEXT characters."""
    try:
        if len(text) > NUMBER_TEXT:
            raise ValueError("too long")
        n = int(text)
    except ValueError:
        raise SpecError(key, f"min-samples={_shown(text)} is not an integer") from None
    if n < 1 or n > 10**12:
        raise SpecError(key, "min-samples must be at least 1")
    return n


def _custom_from_configmap(name: str, kind: str, cm_name: str, data: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    key = f"{KEY_CONFIG} ({cm_name})"
    kind = data.get(f"{name}.kind", kind).strip()
    if kind not in KINDS:
        raise SpecError(f"{key} {name}.kind", f"{_shown(kind)} must be one of {', '.join(KINDS)}")
    queries: dict[str, str] = {}
    for q in QUERY_KEYS[kind]:
        dkey = f"{name}.{q}"
        if dkey not in data:
            raise SpecError(key, f"custom check {_shown(name)} of kind {kind} needs data key {_shown(dkey)}")
        validate_template(f"{key} {dkey}", data[dkey])
        queries[q] = data[dkey].strip()
    return kind, queries


def parse_checks(
    annotations: Mapping[str, str],
    configmaps: Callable[[str], dict[str, str]] | None = None,
) -> tuple[CheckSpec, ...]:
    """Parse the analysis annotations of a Deployment into checks (empty tuple: no analysis).

    ``configmaps(name)`` returns a ConfigMap's data (custom PromQL); when it is None (offline) a
    ConfigMap reference is validated syntactically only and custom checks carry no queries.
    Raises SpecError(key, problem) on any invalid value; nothing is guessed.
    """
    _refuse_unknown_keys(annotations)
    names = _check_names(annotations.get(KEY_CHECKS, ""))
    family = annotations.get(KEY_METRICS, "http").strip()
    if family not in METRIC_FAMILIES:
        raise SpecError(KEY_METRICS, f"{_shown(family)} must be one of {', '.join(METRIC_FAMILIES)}")
    alpha = DEFAULT_ALPHA
    if KEY_ALPHA in annotations:
        alpha = _float(KEY_ALPHA, annotations[KEY_ALPHA].strip(), 0.0, 0.5)
    resolution = DEFAULT_RESOLUTION
    if KEY_RESOLUTION in annotations:
        resolution = parse_resolution(annotations[KEY_RESOLUTION])
    cm_name = annotations.get(KEY_CONFIG, "").strip() or None
    if cm_name is not None and not _CONFIGMAP_RE.match(cm_name):
        raise SpecError(KEY_CONFIG, f"{_shown(cm_name)} is not a valid ConfigMap name")
    _refuse_unlisted_options(annotations, names)
    if not names:
        if KEY_CHECKS in annotations or any(k.startswith(PREFIX + "analysis") for k in annotations):
            raise SpecError(KEY_CHECKS, 'no checks listed (e.g. "error-rate,latency")')
        return ()

    read = _configmap_reader(configmaps)
    specs: list[CheckSpec] = []
    for name in names:
        okey = KEY_CHECK_OPTIONS + name
        opts = _options(okey, annotations.get(okey, ""))
        if name in BUILTIN_CHECKS:
            kind = "errors" if name == "error-rate" else "latency"
            template = f"{family}:{name}"
            spec = CheckSpec(name, kind, template, dict(TEMPLATES[template]), alpha=alpha, resolution=resolution)
        else:
            kind, queries = _custom(name, okey, opts, cm_name, read)
            spec = CheckSpec(name, kind, None, queries, alpha=alpha, resolution=resolution)
            opts = {k: v for k, v in opts.items() if k != "kind"}  # already applied with the ConfigMap
        specs.append(_apply_options(spec, okey, opts))
    return tuple(specs)


def _refuse_unknown_keys(annotations: Mapping[str, str]) -> None:
    """Every ``deliver.dev/analysis*`` key must be one of the analysis keys or a check's options."""
    for key in annotations:
        if not key.startswith(PREFIX + "analysis"):
            continue
        if key in (KEY_CHECKS, KEY_METRICS, KEY_CONFIG, KEY_ALPHA, KEY_RESOLUTION) or key.startswith(KEY_CHECK_OPTIONS):
            continue
        raise SpecError(
            key,
            f"unknown analysis key; known: {KEY_CHECKS}, {KEY_METRICS}, {KEY_CONFIG}, {KEY_ALPHA}, {KEY_RESOLUTION}, "
            f"{KEY_CHECK_OPTIONS}<check>",
        )


def _check_names(text: str) -> list[str]:
    """``deliver.dev/analysis``: the checks' names, comma-separated, each once."""
    names: list[str] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if not _NAME_RE.match(part):
            raise SpecError(KEY_CHECKS, f"{_shown(part)} is not a valid check name (lowercase letters, digits, '-')")
        if part in names:
            raise SpecError(KEY_CHECKS, f"check {_shown(part)} listed twice")
        names.append(part)
    return names


def _refuse_unlisted_options(annotations: Mapping[str, str], names: list[str]) -> None:
    """Options (``deliver.dev/analysis.<check>``) only for a check that is listed."""
    for key in annotations:
        if key.startswith(KEY_CHECK_OPTIONS) and key[len(KEY_CHECK_OPTIONS) :] not in names:
            raise SpecError(
                key, f"options for check {_shown(key[len(KEY_CHECK_OPTIONS) :])}, which {KEY_CHECKS} does not list"
            )


def _configmap_reader(
    configmaps: Callable[[str], dict[str, str]] | None,
) -> Callable[[str], dict[str, str]] | None:
    """``configmaps`` reading each ConfigMap at most once (None offline). A missing or unreadable
    ConfigMap is a SpecError of ``deliver.dev/analysis-config``; an API error is the caller's to retry."""
    if configmaps is None:
        return None
    read: dict[str, dict[str, str]] = {}

    def data(cm_name: str) -> dict[str, str]:
        if cm_name not in read:
            try:
                read[cm_name] = dict(configmaps(cm_name))
            except (SpecError, KubeError):
                raise  # an API error (not a missing ConfigMap) is the caller's to retry
            except Exception as exc:  # the ConfigMap itself is missing or unreadable
                raise SpecError(KEY_CONFIG, f"cannot read ConfigMap {_shown(cm_name)}: {exc}") from exc
        return read[cm_name]

    return data


def _custom(
    name: str,
    okey: str,
    opts: Mapping[str, str],
    cm_name: str | None,
    read: Callable[[str], dict[str, str]] | None,
) -> tuple[str, dict[str, str]]:
    """A custom check's kind (its ``kind`` option, else the ConfigMap's, else errors) and its PromQL
    from the ConfigMap (none offline, when ``read`` is None)."""
    if cm_name is None:
        raise SpecError(
            KEY_CHECKS,
            f"custom check {_shown(name)} needs its PromQL in a ConfigMap named by {KEY_CONFIG} "
            f"(built-ins: {', '.join(BUILTIN_CHECKS)})",
        )
    kind = opts.get("kind", "errors")
    if kind not in KINDS:
        raise SpecError(okey, f"kind={_shown(kind)} must be one of {', '.join(KINDS)}")
    if read is None:
        return kind, {}
    cm_kind, queries = _custom_from_configmap(name, kind, cm_name, read(cm_name))
    if "kind" in opts and cm_kind != kind:
        raise SpecError(okey, f"kind={kind} but ConfigMap {_shown(cm_name)} declares {name}.kind={cm_kind}")
    return cm_kind, queries
