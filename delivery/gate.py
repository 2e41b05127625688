"""``deliver gate``: wait for the delivery of one revision and say how it ended.

The revision to gate is fixed at the first read. Pinned (``--revision``, ``--image``, ``--manifest``:
see ``Pin``), it is the revision the CI pipeline applied, found in the Deployment's template or in
the record (its failed or stable template), however long ago that delivery ended. Not pinned, it is
the template the Deployment declares when the gate starts, unless the record shows that template
was put back after a failed delivery: then it is the failed revision. The gate then follows the
rollout record until that revision is promoted (exit 0), rolled back / aborted / refused (exit 1),
the timeout passes (exit 3) or the API keeps failing or denies access (exit 4). Waiting uses a
watch on the Deployment, not a polling loop; if watching is forbidden it falls back to reading
every 2 seconds.

The public surface (``__all__``) is what ``deliver gate`` and ``deliver wave`` share: ``wait`` (follow a
delivery to its end: ``GateResult``), ``look`` (one read of a Deployment through the same rules:
``Look``), ``Pin`` / ``manifest_pin`` (which change), the exit codes, and ``status_dict`` (what
``deliver status`` shows). ``decide``, ``resolve`` and ``choose_revision`` are the rules inside them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from delivery import spec as specmod
from delivery import templates, yamlfile
from delivery.engine.state import read_request, read_state
from delivery.errors import Forbidden, Gone, KubeError, NotFound, SpecError, StateError, Unauthorized
from delivery.kube.client import DEPLOYMENTS, Kube
from strategies.evidence import Outcome
from strategies.record import DeliveryState, HoldReason, Phase
from strategies.spec import DeliverySpec

__all__ = [
    "API_PATIENCE",
    "EXIT_API",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "GateResult",
    "Look",
    "Pin",
    "look",
    "manifest_pin",
    "status_dict",
    "wait",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_API = 0, 1, 2, 3, 4

# How long the API may keep failing (5xx, unreachable) before the gate gives up with exit 4.
API_PATIENCE = 30.0


@dataclass
class GateResult:
    code: int
    reason: str
    namespace: str
    name: str
    revision: str = ""  # the revision that was gated
    status: dict[str, Any] = field(default_factory=dict)  # the last status read (see status_dict)
    duration: float = 0.0
    spec: DeliverySpec | None = None

    @property
    def outcome(self) -> str:
        return {EXIT_OK: "promoted", EXIT_FAILED: "failed", EXIT_TIMEOUT: "timeout", EXIT_API: "api-error"}.get(
            self.code, "error"
        )

    @property
    def phase(self) -> str:
        """The delivery's phase at the last read ('' if the Deployment was never read)."""
        return str(self.status.get("phase", ""))


@dataclass(frozen=True)
class Pin:
    """What the CI pipeline applied, to find the revision to gate by (one of the three, or nothing).

    ``revision``: deliver's template revision (``deliver status`` shows it as target). ``image``: a
    container image of the applied template. ``images``: every container's image of the applied
    manifest (name -> image); with it, ``revision`` is the hash of the manifest's template, which
    matches only if the manifest spells out every field the API server would default, so the
    images find the template otherwise.
    """

    revision: str = ""
    image: str = ""
    images: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.revision or self.image or self.images)

    def matches(self, template: dict[str, Any]) -> bool:
        if self.revision and templates.revision(template) == self.revision:
            return True
        if self.image:
            return self.image in dict(_images(template)).values()
        return bool(self.images) and _images(template) == self.images

    def describe(self) -> str:
        if self.image:
            return f"image {self.image}"
        if self.images:
            return f"the manifest's template (revision {self.revision}, {', '.join(i for _, i in self.images)})"
        return f"revision {self.revision}"


def _images(template: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    pod = template.get("spec") or {}
    out: list[tuple[str, str]] = []
    for key in ("initContainers", "containers"):
        for c in pod.get(key) or []:
            if isinstance(c, dict):
                out.append((f"{key}/{c.get('name', '')}", str(c.get("image", ""))))
    return tuple(sorted(out))


def manifest_pin(text: str, name: str) -> Pin:
    """The pin for the Deployment ``name`` in a manifest (one or more YAML documents). ValueError if none."""
    try:
        docs = [d for d in yamlfile.load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML: {exc}") from None
    found = [d for d in _flatten(docs) if d.get("kind") == "Deployment"]
    named = [d for d in found if ((d.get("metadata") or {}).get("name")) == name]
    if not named:
        names = ", ".join(str((d.get("metadata") or {}).get("name", "?")) for d in found) or "none"
        raise ValueError(f"no Deployment named {name} in it (Deployments: {names})")
    template = (named[0].get("spec") or {}).get("template")
    if not isinstance(template, dict) or not _images(template):
        raise ValueError(f"Deployment {name} has no pod template with containers")
    return Pin(revision=templates.revision(template), images=_images(template))


def _flatten(docs: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for d in docs:
        if d.get("kind") == "List":
            yield from (i for i in d.get("items") or [] if isinstance(i, dict))
        else:
            yield d


def resolve(pin: Pin, deployment: dict[str, Any]) -> str:
    """The revision ``pin`` names, looked for in the Deployment's template and the record ('' if not seen yet)."""
    target_template = (deployment.get("spec") or {}).get("template") or {}
    known: list[dict[str, Any]] = [target_template]
    try:
        state = read_state(deployment)
    except StateError:
        state = None
    if state is not None:
        if pin.revision and not pin.images:
            seen = (state.revision, state.failed_revision, state.stable_revision)
            return pin.revision if pin.revision in seen else ""
        known += [t for t in (state.failed_template, state.stable_template) if t]
    for template in known:
        if pin.matches(template):
            return templates.revision(template)
    return ""


def status_dict(deployment: dict[str, Any]) -> dict[str, Any]:
    """Everything ``deliver status`` shows about one Deployment, as plain data."""
    meta = deployment["metadata"]
    problems = [f"{e.key}: {e.problem}" for e in specmod.problems(deployment)]
    try:
        state = read_state(deployment).to_dict()
    except StateError as exc:
        state = {"phase": "Unknown", "message": str(exc)}
    state.pop("failedTemplate", None)
    state.pop("handledRequest", None)
    status = deployment.get("status") or {}
    spec = deployment.get("spec") or {}
    verb, rid = read_request(deployment)
    pending = verb if rid and rid != (_handled(deployment) or "") else ""
    out: dict[str, Any] = {
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "strategy": (meta.get("annotations") or {}).get(specmod.STRATEGY, ""),
        "valid": not problems,
        "problems": problems,
        "replicas": spec.get("replicas", 1) if spec.get("replicas") is not None else 1,
        "ready": int(status.get("readyReplicas") or 0),
        "paused": bool(spec.get("paused")),
        "target": templates.revision(spec.get("template") or {}),
        "pendingRequest": pending,
    }
    state.pop("strategy", None)  # the record's copy; the annotation is what is declared now
    out.update(state)
    out.setdefault("phase", Phase.IDLE.value)
    return out


def _handled(deployment: dict[str, Any]) -> str:
    try:
        return read_state(deployment).handled_request
    except StateError:
        return ""


def decide(want: str, deployment: dict[str, Any]) -> tuple[int | None, str]:
    """(exit code or None to keep waiting, reason) for the delivery of revision ``want``."""
    meta = deployment.get("metadata") or {}
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    if not specmod.has_strategy(deployment):
        return EXIT_FAILED, specmod.not_managed(name)
    problems = specmod.problems(deployment)
    if problems:
        listed = "; ".join(f"{e.key}: {e.problem}" for e in problems)
        return EXIT_FAILED, f"invalid annotations, deliver takes no action: {listed}"
    try:
        state = read_state(deployment)
    except StateError as exc:
        return EXIT_FAILED, str(exc)
    target = templates.revision((deployment.get("spec") or {}).get("template") or {})
    verb, rid = read_request(deployment)
    if rid and rid != state.handled_request:
        return None, f"waiting for the controller to take the `{verb}` request"
    phase = state.phase
    if state.revision == want or (phase == Phase.IDLE and state.stable_revision == want):
        if phase == Phase.SUCCEEDED:
            return EXIT_OK, f"revision {want} promoted"
        if phase == Phase.IDLE:
            if state.stable_revision == want and target == want:
                return EXIT_OK, f"nothing to deliver: revision {want} is the stable version"
            return None, state.message or "waiting for the controller"
        if phase in (Phase.ROLLED_BACK, Phase.ABORTED):
            hint = ""
            if state.failed_revision == want and target == want and state.hold is not HoldReason.PREVIOUSLY_FAILED:
                hint = f" (run `deliver retry {meta.get('name', '')}` to deliver it again)"
            return EXIT_FAILED, f"{phase.value}: {state.message}{hint}"
        if phase == Phase.PAUSED and _failed_while_paused(state):
            # deliver.dev/auto-rollback: "false": the delivery failed and waits for an operator's
            # abort or promote; for CI that is a failure (the new version did not pass)
            return EXIT_FAILED, f"failed, automatic rollback is off, waiting for an operator: {state.message}"
        return None, f"{phase.value} step {state.step + 1} weight {state.weight}%: {state.message}"
    if state.failed_revision == want and phase.terminal:
        return EXIT_FAILED, f"revision {want} was rolled back: {state.message}"
    if phase.terminal and state.stable_revision == want and target == want:
        return EXIT_OK, f"nothing to deliver: revision {want} is the stable version"
    if target != want:
        return EXIT_FAILED, (
            f"the Deployment's template changed to revision {target} while the gate "
            f"waited for revision {want} (superseded)"
        )
    return None, f"waiting for the controller to start delivering revision {want}"


def choose_revision(deployment: dict[str, Any]) -> str:
    """The revision an unpinned gate follows: normally the template the Deployment declares now.

    A delivery that failed may already have written the stable template back before the gate
    started (a crash-looping canary is rolled back in well under a second; a CI stage may start
    minutes after the apply). Then the template *is* the stable version, and the delivery to report
    is the one in the record: still rolling back, or rolled back / aborted, however long ago. (To
    gate a revert to the stable version after a failure, pin it: ``deliver gate --manifest``.)
    """
    target = templates.revision((deployment.get("spec") or {}).get("template") or {})
    try:
        state = read_state(deployment)
    except StateError:
        return target
    if not state.revision or state.revision == target or target != state.stable_revision:
        return target
    if not state.phase.terminal or state.phase in (Phase.ROLLED_BACK, Phase.ABORTED):
        return state.revision
    return target


def _failed_while_paused(state: DeliveryState) -> bool:
    """Paused because the step failed (auto-rollback off), not awaiting promotion or on an inconclusive analysis."""
    if state.hold is HoldReason.FAILED:  # strategies.steps.rollback with auto_rollback off
        return True
    for v in reversed(state.verdicts):
        if v.step == state.step and v.at >= state.step_started:
            return v.outcome is Outcome.FAIL
    return False


@dataclass(frozen=True)
class Look:
    """One read of a Deployment through the gate's rules (``look``): the revision gated and where its delivery is."""

    revision: str  # the revision gated; '' while a pinned change is neither the template nor in the record
    code: int | None  # how the delivery of ``revision`` ended (an exit code), None while it goes on
    reason: str
    status: dict[str, Any]  # what ``deliver status`` shows (``status_dict``)
    applied: bool = False  # the pin matches the Deployment's template: the change is on the Deployment

    @property
    def target(self) -> str:
        """The revision of the Deployment's template."""
        return str(self.status.get("target", ""))

    @property
    def phase(self) -> str:
        return str(self.status.get("phase", ""))

    @property
    def held(self) -> bool:
        """Failed and held for an operator (``deliver.dev/auto-rollback: "false"``), not rolled back."""
        return self.code == EXIT_FAILED and self.phase == Phase.PAUSED.value


def look(deployment: dict[str, Any], pin: Pin = Pin(), revision: str = "") -> Look:
    """The delivery of ``revision`` (by default the one ``pin`` names, unpinned: see choose_revision) as
    ``deployment`` says. Pure: ``wait`` reads the Deployment and looks until ``code`` is set."""
    want = revision or (resolve(pin, deployment) if pin else choose_revision(deployment))
    status = status_dict(deployment)
    code, reason = decide(want, deployment) if want else (None, "")
    applied = bool(pin) and pin.matches((deployment.get("spec") or {}).get("template") or {})
    return Look(want, code, reason, status, applied)


def spec_of(deployment: dict[str, Any]) -> DeliverySpec | None:
    try:
        return specmod.parse(deployment)
    except (SpecError, Exception):  # the report works without the spec
        return None


class _Waiter:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        timeout: float,
        on_status: Callable[[dict[str, Any]], None],
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        pin: Pin = Pin(),
    ) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.pin = pin
        self.on_status, self.clock, self.sleep = on_status, clock, sleep
        self.started = clock()
        self.deadline = self.started + timeout
        self.want = ""
        self.last: dict[str, Any] = {}
        self.spec: DeliverySpec | None = None
        self.failing_since: float | None = None
        self.poll = False

    def result(self, code: int, reason: str) -> GateResult:
        return GateResult(
            code, reason, self.namespace, self.name, self.want, self.last, self.clock() - self.started, self.spec
        )

    def see(self, deployment: dict[str, Any]) -> GateResult | None:
        seen = look(deployment, self.pin, self.want)  # the revision is fixed at the first read that finds it
        self.want = seen.revision
        if self.spec is None:
            self.spec = spec_of(deployment)
        self.last = seen.status
        self.on_status(self.last)
        # no code: going on, or pinned and the pipeline's change has not reached the Deployment yet
        return None if seen.code is None else self.result(seen.code, seen.reason)

    def api_trouble(self, exc: KubeError) -> GateResult | None:
        if isinstance(exc, (Unauthorized, Forbidden)):
            return self.result(EXIT_API, str(exc))
        now = self.clock()
        if self.failing_since is None:
            self.failing_since = now
        if now - self.failing_since > API_PATIENCE:
            return self.result(EXIT_API, f"the API kept failing for {int(now - self.failing_since)}s: {exc}")
        self.sleep(1.0)
        return None

    def run(self) -> GateResult:
        while True:
            if self.clock() >= self.deadline and self.last:
                return self.result(EXIT_TIMEOUT, self._timeout_reason())
            try:
                deployment = self.kube.get(DEPLOYMENTS, self.namespace, self.name)
            except NotFound:
                return self.result(EXIT_FAILED, f"deployment {self.namespace}/{self.name} not found")
            except KubeError as exc:
                stop = self.api_trouble(exc)
                if stop is not None:
                    return stop
                if self.clock() >= self.deadline:
                    if not self.last:  # never reached the API at all
                        return self.result(EXIT_API, f"cannot read deployment {self.namespace}/{self.name}: {exc}")
                    return self.result(EXIT_TIMEOUT, self._timeout_reason())
                continue
            self.failing_since = None
            done = self.see(deployment)
            if done is not None:
                return done
            remaining = self.deadline - self.clock()
            if remaining <= 0:
                return self.result(EXIT_TIMEOUT, self._timeout_reason())
            done = self._wait_for_change(deployment, remaining)
            if done is not None:
                return done

    def _wait_for_change(self, deployment: dict[str, Any], remaining: float) -> GateResult | None:
        """Follow the Deployment until it changes or ``remaining`` runs out (a watch; where watch is
        forbidden, one sleep before the next read): the result if what it saw ends the gate, else None."""
        if self.poll:
            self.sleep(min(2.0, remaining))
            return None
        try:
            return self._watch(deployment["metadata"]["resourceVersion"], remaining)
        except Gone:
            return None
        except Forbidden:
            self.poll = True  # get is allowed, watch is not: read every 2 seconds instead
            return None
        except KubeError as exc:
            return self.api_trouble(exc)

    def _watch(self, rv: str, remaining: float) -> GateResult | None:
        seconds = max(1, min(30, math.ceil(remaining)))
        for event in self.kube.watch(DEPLOYMENTS, self.namespace, rv, seconds):
            obj = event.get("object") or {}
            if (obj.get("metadata") or {}).get("name") != self.name or event.get("type") == "BOOKMARK":
                if self.clock() >= self.deadline:
                    return None
                continue
            if event.get("type") == "DELETED":
                return self.result(EXIT_FAILED, f"deployment {self.namespace}/{self.name} was deleted")
            done = self.see(obj)
            if done is not None:
                return done
            if self.clock() >= self.deadline:
                return None
        return None

    def _timeout_reason(self) -> str:
        phase = self.last.get("phase", "")
        message = self.last.get("message", "")
        waited = int(self.clock() - self.started)
        if not self.want:
            return f"timed out after {waited}s waiting for {self.pin.describe()} to be applied to the Deployment"
        return (
            f"timed out after {waited}s waiting for revision {self.want}; "
            f"phase {phase}{': ' + message if message else ''}"
        )


def wait(
    kube: Kube,
    namespace: str,
    name: str,
    timeout: float,
    on_status: Callable[[dict[str, Any]], None] = lambda _s: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    pin: Pin = Pin(),
) -> GateResult:
    """Follow the delivery of the pinned revision (unpinned: see choose_revision) until it ends or ``timeout``."""
    return _Waiter(kube, namespace, name, timeout, on_status, clock, sleep, pin).run()
