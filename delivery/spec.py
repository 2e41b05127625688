"""The annotation schema: parse and validate ``deliver.dev/*`` annotations into a DeliverySpec.

Nothing is guessed: any invalid value raises SpecError naming the key. ``problems()`` lists every
problem of a Deployment at once (used by ``deliver lint`` and ``deliver status``).
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from delivery import duration
from delivery.errors import SpecError
from delivery.labels import selects
from delivery.routing import kinds as routers
from delivery.routing.kinds import Capability
from strategies.spec import CanaryStep, DeliverySpec, HookKind, Hooks, RequestMatch, RouterRef, Strategy

PREFIX = "deliver.dev/"
STRATEGY = PREFIX + "strategy"
STATE = PREFIX + "state"
REQUEST = PREFIX + "request"

KEYS: dict[str, str] = {
    "strategy": "rolling | canary | blue-green | recreate (required)",
    "steps": "canary: traffic percentages, increasing, 1..100; `pause` = manual promotion, e.g. 20,pause,50,100",
    "pause-at": "rolling: percentages of pods updated at which to pause and analyse, e.g. 25,50",
    "interval": "time each step is held and analysed, e.g. 30s, 2m, 1h30m (default 1m)",
    "progress-deadline": "time a step's new pods have to become Ready (default 10m)",
    "auto-rollback": "true | false: roll back by itself on failure (default true)",
    "auto-promote": "blue-green: switch without `deliver promote` once the preview passes (default true)",
    "active-service": "blue-green: Service switched to the new version (default: the Deployment's name)",
    "preview-service": "blue-green: Service selecting the new version (default: NAME-preview)",
    "keep-warm": "blue-green: how long the old version stays up after the switch (default 2m)",
    "router": f"canary: KIND/NAME with KIND {' | '.join(routers.names())} (default {routers.NO_ROUTER})",
    "stable-service": "canary with a router: Service for the stable pods (default NAME-stable)",
    "canary-service": "canary with a router: Service for the canary pods (default NAME-canary)",
    "max-restarts": "container restarts tolerated across the new pods before failing (default 0)",
    "on-inconclusive": "pause | extend | rollback: what an inconclusive analysis does (default pause)",
    "max-extensions": "with on-inconclusive=extend: extensions before pausing (default 3)",
    "analysis-every": "time between looks at an analysed step's growing window, e.g. 30s, at least 1s, or `off` "
    "(judged at the step's end only); default twice the controller's --scrape-interval (30s)",
    "promote-early": "true | false: a step whose every check passes moves on before its interval ends, "
    "once held a minute (default false)",
    "match": f"canary with {'/'.join(routers.able(Capability.MATCH))}: header:NAME=VALUE or cookie:NAME=VALUE "
    "routed to the new version",
    "scale-down-delay": "canary with a router: how long the old version stays up after the switch to 100 % "
    "(an abort then switches back at once); blue-green: the same as keep-warm (default 0)",
    "abort-scale-down-delay": "canary with a router, blue-green: how long a rolled-back/aborted version's pods "
    "stay (no traffic) before they go (default 0)",
    "affinity": f"canary with {'/'.join(routers.able(Capability.PIN))}: `cookie` pins each client to the version it "
    "first got (default off)",
    "mirror-percent": f"canary with {'/'.join(routers.able(Capability.MIRROR))} and a `mirror` step: percent of "
    "requests copied (default 100)",
    "canary-scale": "canary: exact (stable scaled down as the canary scales up; default) | surge (stable kept at N)",
}
ENGINE_ANALYSIS_KEYS = (PREFIX + "analysis-every",)  # analysis* keys the engine reads, not the checks'
ANALYSIS_EVERY_MIN = 1.0  # seconds: the least time between looks at a running window
# notifications and hooks (issue 14): delivery/integrations/notify.py and hooks.py, strategies/hooks.py
KEYS.update(
    {
        "notify-webhook": "http(s) URLs (comma-separated) sent each phase change as the generic JSON body",
        "notify-slack": "http(s) URLs (comma-separated) sent each phase change as a Slack-compatible body",
        "hook-pre-rollout": "http(s) URL that must answer 2xx before the first step (else no rollout)",
        "hook-confirm-promotion": "canary, blue-green: http(s) URL polled before promotion (the switch) until 2xx",
        "hook-load-test": "canary, blue-green: http(s) URL called when each step (the preview) starts being analysed",
        "hook-post-rollout": "http(s) URL called once the delivery ended (promoted, rolled back or aborted)",
        "hook-timeout": "time one hook call may take in all before it counts as failed (default 10s, at most 1m)",
    }
)
RESERVED = {"state", "request"}
# Caps on reading annotations (anyone who may edit the Deployment writes them)
NUMBER_DIGITS = 9  # digits of a number in an annotation (7 days in ms has 9): more is refused unparsed
SHOWN = 80  # characters of a value quoted in a message (an Event says what is wrong, not the whole value)
_DIGITS = rf"[0-9]{{1,{NUMBER_DIGITS}}}"  # a bounded whole number: never int() of thousands of digits
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


_REPR = reprlib.Repr()
_REPR.maxstring = SHOWN


def _shown(value: object) -> str:
    """A value as quoted in a message: repr, at most ``SHOWN`` characters of it."""
    return _REPR.repr(value)


def parse_duration(key: str, value: str, minimum: float = 0.0, maximum: float = 7 * 86400) -> float:
    """Seconds of a duration in the Kubernetes form (``delivery/duration.py``), within [minimum, maximum]."""
    try:
        seconds = duration.seconds(value)
    except duration.DurationError as exc:
        raise SpecError(key, f"{_shown(value)} {exc}") from None
    if seconds < minimum or seconds > maximum:
        raise SpecError(key, f"{_shown(value)} is out of range ({minimum:g}s..{maximum:g}s)")
    return seconds


def _bool(key: str, value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise SpecError(key, f"{_shown(value)} is not a boolean (use true or false)")


def _int(key: str, value: str, lo: int, hi: int) -> int:
    text = value.strip()
    if not re.fullmatch(rf"[+-]?{_DIGITS}", text):
        raise SpecError(key, f"{_shown(value)} is not a whole number (at most {NUMBER_DIGITS} digits)")
    number = int(text)
    if not lo <= number <= hi:
        raise SpecError(key, f"{number} is out of range ({lo}..{hi})")
    return number


def _percent_list(key: str, value: str, allow_pause: bool) -> tuple[CanaryStep, ...]:
    tokens = [t.strip() for t in value.split(",")]
    if not value.strip() or any(t == "" for t in tokens):
        raise SpecError(key, f"{_shown(value)} must be a comma-separated list with no empty items")
    steps: list[CanaryStep] = []
    last = 0
    for token in tokens:
        if token.lower() in ("match", "mirror") and allow_pause:
            kind = token.lower()
            if any(not s.pause and not s.match and not s.mirror for s in steps) or any(getattr(s, kind) for s in steps):
                raise SpecError(key, f"`{kind}` must come before any percentage, once")
            steps.append(CanaryStep(match=True) if kind == "match" else CanaryStep(mirror=True))
            continue
        if token.lower() == "pause":
            if not allow_pause:
                raise SpecError(key, "`pause` is not allowed here")
            if steps and steps[-1].pause:
                raise SpecError(key, "two `pause` steps in a row")
            steps.append(CanaryStep(pause=True))
            continue
        if not re.fullmatch(rf"{_DIGITS}%?", token):
            raise SpecError(key, f"{_shown(token)} is not a percentage (in {_shown(value)})")
        weight = int(token.rstrip("%"))
        if not 1 <= weight <= 100:
            raise SpecError(key, f"{weight} is outside 1..100")
        if weight <= last:
            raise SpecError(key, f"weights must increase: {weight} after {last}")
        last = weight
        steps.append(CanaryStep(weight=weight))
    if not any(not s.pause and not s.match and not s.mirror for s in steps):
        raise SpecError(key, "needs at least one percentage")
    return tuple(steps)


def _name(key: str, value: str) -> str:
    if not _DNS1035.match(value):
        raise SpecError(key, f"{_shown(value)} is not a valid Service/object name")
    return value


def _router(key: str, value: str) -> RouterRef:
    kind, _, name = value.strip().partition("/")
    described = routers.get(kind)
    if described is None:
        raise SpecError(key, f"unknown router kind {_shown(kind)} (use one of {', '.join(routers.names())})")
    if not described.weighted:
        if name:
            raise SpecError(key, f"the {kind} router takes no name")
        return RouterRef(kind)
    if not name:
        raise SpecError(key, f"{kind} needs the route's name: {kind}/NAME")
    return RouterRef(kind, _name(key, name))


_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,127}$")
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_MATCH_VALUE = re.compile(r"^[A-Za-z0-9._~-]{1,256}$")


def _match(key: str, value: str) -> RequestMatch:
    """``header:NAME=VALUE`` or ``cookie:NAME=VALUE`` (names and values plain tokens, no quoting)."""
    kind, _, rest = value.strip().partition(":")
    name, eq, wanted = rest.partition("=")
    if kind not in ("header", "cookie") or not eq:
        raise SpecError(key, f"{_shown(value)} is not header:NAME=VALUE or cookie:NAME=VALUE")
    if not (_HEADER_NAME if kind == "header" else _COOKIE_NAME).match(name):
        raise SpecError(key, f"{_shown(name)} is not a valid {kind} name")
    if not _MATCH_VALUE.match(wanted):
        raise SpecError(key, f"{_shown(wanted)} must be 1..256 of letters, digits and . _ ~ -")
    return RequestMatch(kind, name.lower() if kind == "header" else name, wanted)


def parse(deployment: dict[str, Any], configmaps: Callable[[str], dict[str, str]] | None = None) -> DeliverySpec:
    """Validate every ``deliver.dev/*`` annotation of a Deployment; raise SpecError on the first problem.

    A valid Deployment (every pass of a managed one) is parsed once: ``problems`` (one parse per
    key, to name every problem) runs only when that parse or the unknown-key check fails, and then
    decides which problem is raised."""
    if not _unknown_keys(deployment):
        try:
            return _parse(deployment, configmaps)
        except SpecError:
            pass
    found = problems(deployment, configmaps)
    if found:
        raise found[0]
    return _parse(deployment, configmaps)


def _unknown_keys(deployment: dict[str, Any]) -> list[SpecError]:
    errors = []
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    for key in annotations:
        if key.startswith(PREFIX):
            short = key[len(PREFIX) :]
            if short not in KEYS and short not in RESERVED and not short.startswith("analysis"):
                errors.append(SpecError(key, f"unknown key (known: {', '.join(sorted(KEYS))}, analysis*)"))
    return errors


def problems(deployment: dict[str, Any], configmaps: Callable[[str], dict[str, str]] | None = None) -> list[SpecError]:
    """Every problem of the Deployment's deliver annotations (empty: valid)."""
    errors: list[SpecError] = _unknown_keys(deployment)
    # Validate key by key so every problem is reported, not only the first.
    for key in KEYS:
        try:
            _parse(deployment, configmaps, only=key)
        except SpecError as err:
            if all(err.key != e.key for e in errors):
                errors.append(err)
    if not errors:
        try:
            _parse(deployment, configmaps)
        except SpecError as err:
            errors.append(err)
    return errors


_Get = Callable[[str], str | None]  # an annotation's value by its short key; None: absent, or not read by this parse


def _parse(
    deployment: dict[str, Any], configmaps: Callable[[str], dict[str, str]] | None, only: str | None = None
) -> DeliverySpec:
    """One parse of the annotations: all of them, or (``only``) one key besides the strategy, as
    ``problems`` parses them to name every problem. The groups are read in a fixed order, so the
    first problem raised is always the same one."""
    meta = deployment.get("metadata") or {}
    name = meta.get("name", "")
    annotations: dict[str, str] = dict(meta.get("annotations") or {})

    def get(short: str) -> str | None:
        if only is not None and only != short and short != "strategy":
            return None
        value = annotations.get(PREFIX + short)
        return None if value is None else str(value)

    strategy = _strategy(annotations)
    fields: dict[str, Any] = {"strategy": strategy}
    fields.update(_step_fields(strategy, get))
    fields.update(_progress_fields(get))
    fields.update(_routing_fields(strategy, name, get))
    fields.update(_judging_fields(get))
    hooks = _hooks(strategy, get)
    _check_manual_switch(strategy, fields, hooks)
    if only is None:
        fields["hooks"] = hooks
    _check_notify(get)
    fields.update(_traffic_fields(strategy, get))
    if only is None:
        _check_deployment(name, strategy, deployment.get("spec") or {})
        _check_services(strategy, fields)
        if strategy is Strategy.CANARY:
            _check_match(fields)
        fields["analysis"] = _analysis(annotations, configmaps)
    elif only == "analysis":
        _analysis(annotations, configmaps, checked=False)
    return DeliverySpec(**fields)


def _strategy(annotations: dict[str, str]) -> Strategy:
    """``deliver.dev/strategy`` (required, read by every parse)."""
    raw = annotations.get(STRATEGY)
    if raw is None:
        raise SpecError(STRATEGY, "missing (rolling, canary, blue-green or recreate)")
    try:
        return Strategy(raw.strip())
    except ValueError:
        raise SpecError(
            STRATEGY, f"unknown strategy {_shown(raw)} (use rolling, canary, blue-green or recreate)"
        ) from None


def _applies(key: str, strategy: Strategy, *strategies: Strategy) -> None:
    """Refuse a key set on a Deployment whose strategy it does not apply to."""
    if strategy not in strategies:
        raise SpecError(key, f"only applies to {' and '.join(s.value for s in strategies)}, not {strategy.value}")


def _one_of(key: str, value: str, choices: tuple[str, ...]) -> str:
    """A value that must be one of a few words."""
    if value.strip() not in choices:
        raise SpecError(key, f"{_shown(value)} is not one of {', '.join(choices)}")
    return value.strip()


def _step_fields(strategy: Strategy, get: _Get) -> dict[str, Any]:
    """Where a delivery stops: canary's steps (default 20, 50, 100) and rolling's pause points (default 50)."""
    fields: dict[str, Any] = {}
    if (v := get("steps")) is not None:
        _applies(PREFIX + "steps", strategy, Strategy.CANARY)
        fields["steps"] = _percent_list(PREFIX + "steps", v, allow_pause=True)
    elif strategy is Strategy.CANARY:
        fields["steps"] = (CanaryStep(20), CanaryStep(50), CanaryStep(100))
    if (v := get("pause-at")) is not None:
        _applies(PREFIX + "pause-at", strategy, Strategy.ROLLING)
        points = _percent_list(PREFIX + "pause-at", v, allow_pause=False)
        if points[-1].weight >= 100:
            raise SpecError(PREFIX + "pause-at", "pause points must be below 100 (100% is the end)")
        fields["pause_at"] = tuple(p.weight for p in points)
    elif strategy is Strategy.ROLLING:
        fields["pause_at"] = (50,)
    return fields


def _progress_fields(get: _Get) -> dict[str, Any]:
    """How a delivery moves on: each step's interval, the new pods' progress deadline, whether it rolls
    back and promotes by itself, and how long blue-green keeps the old version warm."""
    fields: dict[str, Any] = {}
    if (v := get("interval")) is not None:
        fields["interval"] = parse_duration(PREFIX + "interval", v, minimum=1)
    if (v := get("progress-deadline")) is not None:
        fields["progress_deadline"] = parse_duration(PREFIX + "progress-deadline", v, minimum=5)
    if (v := get("auto-rollback")) is not None:
        fields["auto_rollback"] = _bool(PREFIX + "auto-rollback", v)
    if (v := get("auto-promote")) is not None:
        fields["auto_promote"] = _bool(PREFIX + "auto-promote", v)
    if (v := get("keep-warm")) is not None:
        fields["keep_warm"] = parse_duration(PREFIX + "keep-warm", v)
    return fields


def _routing_fields(strategy: Strategy, name: str, get: _Get) -> dict[str, Any]:
    """The Services deliver selects the versions with (defaults named after the Deployment) and the router."""
    fields: dict[str, Any] = {}
    for short, attr, default in (
        ("active-service", "active_service", name),
        ("preview-service", "preview_service", f"{name}-preview"),
        ("stable-service", "stable_service", f"{name}-stable"),
        ("canary-service", "canary_service", f"{name}-canary"),
    ):
        v = get(short)
        fields[attr] = _name(PREFIX + short, v.strip()) if v is not None else default
    if (v := get("router")) is not None:
        router = _router(PREFIX + "router", v)
        if strategy is not Strategy.CANARY and _described(router).weighted:
            raise SpecError(PREFIX + "router", f"weighted routers apply to canary, not {strategy.value}")
        fields["router"] = router
    return fields


def _judging_fields(get: _Get) -> dict[str, Any]:
    """How a step is judged: restarts tolerated, what an inconclusive analysis does, and the looks at a
    running window (how often; whether a passing step moves on early)."""
    fields: dict[str, Any] = {}
    if (v := get("max-restarts")) is not None:
        fields["max_restarts"] = _int(PREFIX + "max-restarts", v, 0, 1000)
    if (v := get("on-inconclusive")) is not None:
        fields["on_inconclusive"] = _one_of(PREFIX + "on-inconclusive", v, ("pause", "extend", "rollback"))
    if (v := get("max-extensions")) is not None:
        fields["max_extensions"] = _int(PREFIX + "max-extensions", v, 0, 100)
    if (v := get("analysis-every")) is not None:
        fields["analysis_every"] = _analysis_every(PREFIX + "analysis-every", v)
    if (v := get("promote-early")) is not None:
        fields["promote_early"] = _bool(PREFIX + "promote-early", v)
    return fields


def _check_manual_switch(strategy: Strategy, fields: dict[str, Any], hooks: Hooks) -> None:
    """A blue-green switch that waits for ``deliver promote`` needs no confirm-promotion hook as well."""
    manual_switch = strategy is Strategy.BLUE_GREEN and not fields.get("auto_promote", True)
    if manual_switch and hooks.url(HookKind.CONFIRM_PROMOTION):
        raise SpecError(
            PREFIX + "hook-confirm-promotion",
            'with deliver.dev/auto-promote "false" the switch already waits for `deliver promote` (which passes '
            "the hook anyway); keep one of the two",
        )


def _check_notify(get: _Get) -> None:
    """``deliver.dev/notify-*``: 1..MAX_URLS webhook URLs each (read again by the notifier when it sends)."""
    for short in ("notify-webhook", "notify-slack"):
        if (v := get(short)) is not None:
            urls = [u.strip() for u in v.split(",")]
            if not any(urls):
                raise SpecError(PREFIX + short, "needs at least one URL")
            if len(urls) > MAX_URLS:
                raise SpecError(PREFIX + short, f"{len(urls)} URLs; at most {MAX_URLS} per annotation")
            for url in urls:
                webhook_url(PREFIX + short, url)


def _traffic_fields(strategy: Strategy, get: _Get) -> dict[str, Any]:
    """What reaches the new version (a request match, session affinity, mirrored requests), how canary
    scales, and how long an old or rolled-back version's pods stay after the switch."""
    fields: dict[str, Any] = {}
    if (v := get("match")) is not None:
        _applies(PREFIX + "match", strategy, Strategy.CANARY)
        fields["match"] = _match(PREFIX + "match", v)
    if (v := get("scale-down-delay")) is not None:
        key = PREFIX + "scale-down-delay"
        _applies(key, strategy, Strategy.CANARY, Strategy.BLUE_GREEN)
        if strategy is Strategy.BLUE_GREEN:
            if get("keep-warm") is not None:
                raise SpecError(key, "blue-green's keep-warm is the same thing; set one of them")
            fields["keep_warm"] = parse_duration(key, v)
        else:
            fields["scale_down_delay"] = parse_duration(key, v, maximum=86400)
    if (v := get("abort-scale-down-delay")) is not None:
        key = PREFIX + "abort-scale-down-delay"
        _applies(key, strategy, Strategy.CANARY, Strategy.BLUE_GREEN)
        fields["abort_scale_down_delay"] = parse_duration(key, v, maximum=86400)
    if (v := get("affinity")) is not None:
        _applies(PREFIX + "affinity", strategy, Strategy.CANARY)
        fields["affinity"] = _one_of(PREFIX + "affinity", v, ("cookie", "none")) == "cookie"
    if (v := get("mirror-percent")) is not None:
        _applies(PREFIX + "mirror-percent", strategy, Strategy.CANARY)
        fields["mirror_percent"] = _int(PREFIX + "mirror-percent", v.strip().rstrip("%"), 1, 100)
    if (v := get("canary-scale")) is not None:
        _applies(PREFIX + "canary-scale", strategy, Strategy.CANARY)
        fields["canary_scale"] = _one_of(PREFIX + "canary-scale", v, ("exact", "surge"))
    return fields


def _check_deployment(name: str, strategy: Strategy, spec: dict[str, Any]) -> None:
    """What the strategy needs of the Deployment itself: a short enough name, recreate's native strategy,
    a selector that keeps deliver's own ReplicaSets apart."""
    if len(name) > 52 and strategy in (Strategy.CANARY, Strategy.BLUE_GREEN):
        # deliver names its ReplicaSet NAME-<10-char revision> and labels it with NAME (max 63)
        raise SpecError(
            STRATEGY,
            f"the Deployment name is {len(name)} characters; {strategy.value} "
            "needs at most 52 (NAME-<revision> must stay a valid label value)",
        )
    if strategy is Strategy.RECREATE:
        native = ((spec.get("strategy") or {}).get("type")) or "RollingUpdate"
        if native != "Recreate":
            raise SpecError(
                STRATEGY,
                "recreate needs the Deployment's spec.strategy.type: Recreate "
                f"(it is {native}), so two versions never run at once",
            )
    if strategy in (Strategy.CANARY, Strategy.BLUE_GREEN):
        selector = spec.get("selector") or {}
        if selects(selector, {"deliver.dev/owner": name}):
            raise SpecError(
                STRATEGY,
                "the Deployment's selector must use matchLabels or In/Exists "
                "expressions so deliver's own ReplicaSets stay apart",
            )


def _check_services(strategy: Strategy, fields: dict[str, Any]) -> None:
    """The Services the strategy uses: a default name must be a valid one, blue-green's two must differ."""
    used = {
        Strategy.BLUE_GREEN: ("active-service", "preview-service"),
        Strategy.CANARY: ("stable-service", "canary-service"),
    }.get(strategy, ())
    if strategy is Strategy.CANARY and not _described(fields.get("router", RouterRef(routers.NO_ROUTER))).weighted:
        used = ()
    for short in used:
        value = fields[short.replace("-", "_")]
        if not _DNS1035.match(value):
            raise SpecError(
                PREFIX + short,
                f"the default Service name {_shown(value)} is not a valid Service name; "
                f"set {PREFIX + short} explicitly",
            )
    if strategy is Strategy.BLUE_GREEN and fields["active_service"] == fields["preview_service"]:
        raise SpecError(PREFIX + "preview-service", "must differ from the active Service")


def _analysis(
    annotations: dict[str, str], configmaps: Callable[[str], dict[str, str]] | None, checked: bool = True
) -> tuple[Any, ...]:
    """The metric checks (``deliver.dev/analysis*``); ``checked``: the in-step keys need one too."""
    from delivery.analysis.checks import parse_checks  # the analysis schema lives with the analysis

    checks = parse_checks(_checks_only(annotations), configmaps)
    if checked:
        _in_step_needs_checks(annotations, checks)
    return checks


def _analysis_every(key: str, value: str) -> float:
    """``deliver.dev/analysis-every``: a duration of at least ANALYSIS_EVERY_MIN, or ``off`` (0)."""
    if value.strip().lower() == "off":
        return 0.0
    return parse_duration(key, value, minimum=ANALYSIS_EVERY_MIN, maximum=86400)


def _checks_only(annotations: dict[str, str]) -> dict[str, str]:
    """The annotations the metric checks are parsed from (without the engine's analysis-* keys)."""
    return {k: v for k, v in annotations.items() if k not in ENGINE_ANALYSIS_KEYS}


def _in_step_needs_checks(annotations: dict[str, str], checks: tuple[Any, ...]) -> None:
    """In-step analysis keys without a metric check would silently do nothing: refused."""
    for short in ("analysis-every", "promote-early"):
        if PREFIX + short in annotations and not checks:
            raise SpecError(PREFIX + short, f"has no effect without metric checks ({PREFIX}analysis)")


def _hooks(strategy: Strategy, get: Callable[[str], str | None]) -> Hooks:
    """``deliver.dev/hook-*``: one URL per kind; confirm-promotion and load-test are canary's and
    blue-green's (the strategies that analyse a new version before it takes all traffic)."""
    urls: list[tuple[HookKind, str]] = []
    for kind in HookKind:
        value = get("hook-" + kind.value)
        if value is None:
            continue
        key = PREFIX + "hook-" + kind.value
        gated = (Strategy.CANARY, Strategy.BLUE_GREEN)
        if kind in (HookKind.CONFIRM_PROMOTION, HookKind.LOAD_TEST) and strategy not in gated:
            raise SpecError(key, f"only applies to canary and blue-green, not {strategy.value}")
        urls.append((kind, webhook_url(key, value)))
    timeout = Hooks().timeout
    if (v := get("hook-timeout")) is not None:
        timeout = parse_duration(PREFIX + "hook-timeout", v, minimum=0.1, maximum=MAX_HOOK_TIMEOUT)
    return Hooks(tuple(urls), timeout)


MAX_URLS = 5  # per notify-* annotation (each URL is one request per phase change)
MAX_URL_LENGTH = 2048
MAX_HOOK_TIMEOUT = 60.0  # seconds, one attempt (docs/security.md: the caps)


def webhook_url(key: str, value: str) -> str:
    """An http(s) URL a webhook (notification or hook) may be sent to; credentials do not belong in
    an annotation (the signing secret is the controller's: DELIVER_WEBHOOK_SECRET)."""
    url = value.strip()
    if len(url) > MAX_URL_LENGTH:
        raise SpecError(key, f"a URL of {len(url)} characters; at most {MAX_URL_LENGTH}")
    if not url or any(c.isspace() for c in url):
        raise SpecError(key, f"{_shown(value)} is not a URL (empty, or with spaces)")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise SpecError(key, f"{_shown(value)} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(key, f"{_shown(value)} is not an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise SpecError(key, f"the URL for {parts.hostname} carries credentials; keep secrets out of annotations")
    return url


def _described(router: RouterRef) -> type[routers.RouterKind]:
    """What the routers' registry says of ``router`` (its kind was checked by ``_router``)."""
    return routers.get(router.kind) or routers.Replica


def _check_match(fields: dict[str, Any]) -> None:
    """``deliver.dev/match`` and a ``match`` step need each other and a router that can match requests;
    what else each router can do (mirror, pin) and its own checks come from the routers' registry
    (``delivery/routing/kinds.py``), so a router added there needs nothing here."""
    match: RequestMatch | None = fields.get("match")
    router: RouterRef = fields.get("router", RouterRef(routers.NO_ROUTER))
    described = _described(router)
    mirrored = any(step.mirror for step in fields.get("steps", ()))
    for short, attr in (("scale-down-delay", "scale_down_delay"), ("abort-scale-down-delay", "abort_scale_down_delay")):
        if fields.get(attr) and not described.weighted:
            raise SpecError(
                PREFIX + short,
                "needs a weighted router: without one the user's Service still sends the old (or failed) "
                "version its share of requests",
            )
    if fields.get("affinity") and not described.can(Capability.PIN):
        raise SpecError(
            PREFIX + "affinity",
            f"session affinity needs a {routers.either(routers.able(Capability.PIN))} router (not {router.kind})",
        )
    if "mirror_percent" in fields and not mirrored:
        raise SpecError(PREFIX + "mirror-percent", "needs a `mirror` step in deliver.dev/steps")
    if mirrored and not described.can(Capability.MIRROR):
        raise SpecError(
            PREFIX + "steps",
            "a `mirror` step needs a router that mirrors requests: "
            f"{routers.either(routers.able(Capability.MIRROR))} (not {router.kind})",
        )
    if any(step.match for step in fields.get("steps", ())) and match is None:
        raise SpecError(PREFIX + "steps", "a `match` step needs deliver.dev/match (e.g. header:x-canary=always)")
    if match is None:
        return
    described.check_match(PREFIX + "match", match)  # the router's own checks, in its own words
    if not described.can(Capability.MATCH):
        raise SpecError(
            PREFIX + "match",
            f"needs a router that can match requests: {routers.either(routers.able(Capability.MATCH))}",
        )


def has_record(deployment: dict[str, Any]) -> bool:
    """Has deliver held this Deployment (its state annotation is there)?"""
    return STATE in ((deployment.get("metadata") or {}).get("annotations") or {})


def has_strategy(deployment: dict[str, Any]) -> bool:
    """Is this Deployment managed by deliver (does it carry the strategy annotation)?"""
    return STRATEGY in ((deployment.get("metadata") or {}).get("annotations") or {})


def not_managed(name: str) -> str:
    """Why deliver does nothing with Deployment ``name`` (NAMESPACE/NAME) that ``has_strategy`` refuses,
    and what to do: the one wording of the gate, the CLI and the wave file."""
    return (
        f"deployment {name} is not managed by deliver: no {STRATEGY} annotation "
        "(add one: rolling, canary, blue-green or recreate)"
    )


def leftover_routing(deployment: dict[str, Any]) -> tuple[RouterRef, str, str, str]:
    """What the remaining annotations of a released Deployment (no strategy) still declare:
    (router, stable Service, canary Service, preview Service), defaults where absent or invalid."""
    meta = deployment.get("metadata") or {}
    name = str(meta.get("name", ""))
    annotations: dict[str, str] = dict(meta.get("annotations") or {})
    router = RouterRef(routers.NO_ROUTER)
    try:
        if (raw := annotations.get(PREFIX + "router")) is not None:
            router = _router(PREFIX + "router", str(raw))
    except SpecError:
        pass
    names = []
    for short, default in (
        ("stable-service", f"{name}-stable"),
        ("canary-service", f"{name}-canary"),
        ("preview-service", f"{name}-preview"),
    ):
        value = str(annotations.get(PREFIX + short, default)).strip()
        names.append(value if _DNS1035.match(value) else default)
    return router, names[0], names[1], names[2]
