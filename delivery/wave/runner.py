"""Runs one wave against its clusters (``WaveRunner``): observe every stage, plan, act, again.

Each cluster's own deliver controller does each delivery; the runner only sequences them, round
after round:

1. **Observe** every stage from its cluster (``observe.py``, pure): the wave's marker on the
   Deployment and deliver's record, read through the gate's rules (``delivery.gate.look``).
2. **Plan** (``plan.py``, pure): the first group of stages not yet passed runs now; a failed stage
   ends the wave and says which earlier stages to put back or keep.
3. **Act**: apply the change to the group's stages (``writes.py``), wait for each delivery with
   ``delivery.gate.wait`` pinned to the change, soak, record ``passedAt``; then observe again. After
   a failure: abort the group's deliveries still going on, write the previous templates back and
   wait for them too.

It stops before a stage if the wave lost one of its Leases (``lock.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from delivery.engine.state import read_state
from delivery.errors import DeliverError, KubeError, StateError
from delivery.gate import EXIT_API, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, Pin, wait
from delivery.kube.client import Kube
from delivery.wave.clusters import StageUnreachable, read_stage
from delivery.wave.file import Change, OnFailure, Stage, Wave
from delivery.wave.lock import WaveLock, WaveLocks
from delivery.wave.observe import StageState, StageView, observe, pin_of
from delivery.wave.plan import WavePlan, plan
from delivery.wave.report import StageResult, WaveEvent, WaveResult
from delivery.wave.writes import apply_change, mark, request_abort, write_back

SOAK_POLL = 2.0


class _Cancelled(Exception):
    """Another stage of the group failed: stop waiting for this one (it is left as it is)."""


class WaveRunner:
    """Runs one wave against its clusters (``kubes``: one client per stage)."""

    def __init__(
        self,
        wave: Wave,
        change: Change,
        kubes: Mapping[str, Kube],
        wid: str,
        on_event: Callable[[WaveEvent], None] = lambda _e: None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lock: WaveLock | WaveLocks | None = None,
        where: Mapping[str, str] | None = None,
    ) -> None:
        self.wave, self.change, self.kubes, self.wid = wave, change, kubes, wid
        self.lock = lock
        self.on_event, self.clock, self.sleep = on_event, clock, sleep
        self.results = {
            s.name: StageResult(s.name, (where or {}).get(s.name, s.where), app=f"{s.namespace}/{s.app}")
            for s in wave.stages
        }
        self._stop = threading.Event()

    # ---- observing ----

    def views(self) -> dict[str, StageView]:
        """Every stage as its cluster says; a cluster that cannot be read is an ``UNREACHABLE`` view
        (the plan decides whether that stops the wave: it does not stop a rollback of the others)."""
        out: dict[str, StageView] = {}
        for s in self.wave.stages:
            try:
                deployment = read_stage(self.kubes[s.name], s)
            except StageUnreachable as exc:
                out[s.name] = StageView(s, StageState.UNREACHABLE, str(exc.error))
                continue
            if deployment is None:
                raise StateError(f"stage {s.name}: deployment {s.namespace}/{s.app} not found (deleted mid-wave?)")
            out[s.name] = observe(s, self.change, self.wid, deployment, self.clock())
        return out

    def _note(self, stage: str, state: str, message: str, status: dict[str, Any] | None = None) -> None:
        self.on_event(WaveEvent(stage, state, message, status))

    def _result(self, wave_started: float, code: int, reason: str) -> WaveResult:
        return WaveResult(
            code,
            reason,
            self.wave.name,
            self.wid,
            [self.results[s.name] for s in self.wave.stages],
            self.clock() - wave_started,
            wave_started,
        )

    # ---- the loop ----

    def run(self, until: str | None = None, dry_run: bool = False) -> WaveResult:
        started = self.clock()
        for _ in range(4 * len(self.wave.groups) + 8):
            try:
                views = self.views()
            except StateError as exc:
                return self._result(started, EXIT_FAILED, f"{exc}; the wave stops, nothing further is changed")
            self._settle(views)
            p = plan(self.wave, views, until)
            if dry_run:
                for name in p.run:
                    self.results[name].outcome = "not-reached"
                    self.results[name].reason = f"would run now ({views[name].state.value}: {views[name].reason})"
                return self._result(started, EXIT_OK, f"dry run: next {p.reason}" if p.run else p.reason)
            if p.outcome == "passed":
                return self._result(started, EXIT_OK, p.reason)
            if p.outcome == "failed":
                return self._fail(started, p, views)
            if p.outcome == "unreachable":
                return self._result(started, EXIT_API, f"{p.reason}; the wave stops, nothing further is changed")
            if self.lock is not None and self.lock.lost:
                return self._result(started, EXIT_FAILED, f"the wave lost its lock ({self.lock.lost}); it stops")
            codes = self._run_group(p.run, views)
            if EXIT_API in codes.values():
                bad = next(n for n, c in codes.items() if c == EXIT_API)
                return self._result(
                    started, EXIT_API, f"stage {bad}: {self.results[bad].reason}; nothing further is changed"
                )
            if EXIT_TIMEOUT in codes.values():
                bad = next(n for n, c in codes.items() if c == EXIT_TIMEOUT)
                return self._result(
                    started,
                    EXIT_TIMEOUT,
                    f"stage {bad}: {self.results[bad].reason}; run the wave again to go on waiting",
                )
        return self._result(started, EXIT_FAILED, "the wave made no progress (its stages keep changing)")

    def _settle(self, views: Mapping[str, StageView]) -> None:
        """The results of stages this run did not act on, from what the clusters say."""
        for name, v in views.items():
            r = self.results[name]
            r.revision = r.revision or v.revision
            r.phase = str(v.status.get("phase", r.phase))
            if r.started:
                continue
            if v.state is StageState.PASSED:
                r.outcome, r.reason = "passed", v.reason
            elif v.state is StageState.ROLLED_BACK:
                r.outcome, r.reason = "rolled-back", v.reason
            elif v.state is StageState.FAILED:
                r.outcome, r.reason = "failed", v.reason

    # ---- one group ----

    def _run_group(self, names: tuple[str, ...], views: Mapping[str, StageView]) -> dict[str, int]:
        self._stop.clear()
        codes: dict[str, int] = {}
        if len(names) == 1:
            codes[names[0]] = self._run_stage(views[names[0]])
            return codes

        def one(name: str) -> None:
            codes[name] = self._run_stage(views[name])

        threads = [threading.Thread(target=one, args=(n,), name=f"wave-{n}") for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return codes

    def _run_stage(self, view: StageView) -> int:
        stage = view.stage
        r = self.results[stage.name]
        r.started = self.clock()
        kube = self.kubes[stage.name]
        try:
            code = self._deliver(kube, view, r)
        except _Cancelled:
            r.outcome, r.reason = "delivering", "stopped waiting: another stage of its group failed"
            code = EXIT_FAILED
        except KubeError as exc:
            r.outcome, r.reason = "api-error", str(exc)
            code = EXIT_API
        except (DeliverError, ValueError) as exc:  # ValueError: the change no longer fits the Deployment
            r.outcome, r.reason = "failed", str(exc)
            code = EXIT_FAILED
        r.ended = self.clock()
        if code != EXIT_OK and r.outcome != "delivering":
            self._stop.set()
        self._note(stage.name, r.outcome, r.reason)
        return code

    def _deliver(self, kube: Kube, view: StageView, r: StageResult) -> int:
        stage = view.stage
        pin = Pin()
        if view.state is StageState.PENDING:
            written, marker = apply_change(kube, stage, self.change, self.wid, self.wave.name, self.clock)
            pin = pin_of(stage, self.change, written, marker, self.wid)
            self._note(stage.name, StageState.DELIVERING.value, f"applied {self.change.describe()}")
        else:
            deployment = read_stage(kube, stage) or {}
            pin = pin_of(stage, self.change, deployment, view.marker, self.wid)
        if view.state in (StageState.PENDING, StageState.DELIVERING):
            self._note(stage.name, StageState.DELIVERING.value, "waiting for the delivery")

            def show(status: dict[str, Any]) -> None:
                if self._stop.is_set():
                    raise _Cancelled()
                r.phase = str(status.get("phase", ""))
                self._note(stage.name, StageState.DELIVERING.value, str(status.get("message", "")), status)

            result = wait(
                kube,
                stage.namespace,
                stage.app,
                stage.timeout,
                on_status=show,
                clock=self.clock,
                sleep=self.sleep,
                pin=pin,
            )
            r.revision = result.revision or r.revision
            r.reason = result.reason
            r.phase = result.phase or r.phase
            if result.code != EXIT_OK:
                r.outcome = {EXIT_FAILED: "failed", EXIT_TIMEOUT: "timeout", EXIT_API: "api-error"}.get(
                    result.code, "failed"
                )
                return result.code
            mark(kube, stage, self.wid, passed=self.clock())
        return self._soak(kube, stage, r)

    def _soak(self, kube: Kube, stage: Stage, r: StageResult) -> int:
        deployment = read_stage(kube, stage) or {}
        view = observe(stage, self.change, self.wid, deployment, self.clock())
        if view.state is StageState.SOAKING:
            self._note(stage.name, StageState.SOAKING.value, f"soaking for {int(view.soak_left)}s")
        while view.state is StageState.SOAKING:
            if self._stop.is_set():
                raise _Cancelled()
            self.sleep(min(SOAK_POLL, max(0.05, view.soak_left)))
            deployment = read_stage(kube, stage) or {}
            view = observe(stage, self.change, self.wid, deployment, self.clock())
        if view.state is not StageState.PASSED:
            r.outcome, r.reason = "failed", f"during the soak: {view.reason}"
            return EXIT_FAILED
        r.outcome, r.reason = "passed", view.reason
        r.revision = view.revision or r.revision
        return EXIT_OK

    # ---- after a failure ----

    def _fail(self, started: float, p: WavePlan, views: Mapping[str, StageView]) -> WaveResult:
        undo = list(p.undo)
        lost = list(p.unreachable)
        notes = self._abort_group(p.abort, views, undo, lost)
        for name in undo:
            try:
                ok, why = self._undo(name, views[name])
            except StageUnreachable as exc:
                lost.append(name)
                self.results[name].reason = f"unreachable: {exc.error}"
                continue
            self.results[name].outcome = "rolled-back" if ok else "failed"
            self.results[name].reason = why
            notes.append(f"{name} {'rolled back' if ok else 'NOT rolled back: ' + why}")
        for name in lost:
            self.results[name].outcome = "api-error"
            if not self.results[name].reason.startswith("unreachable"):
                self.results[name].reason = f"unreachable: {views[name].reason}"
            self.results[name].reason += "; not rolled back: run the wave again to finish the rollback"
        if lost:
            notes.append(f"{', '.join(lost)} unreachable, NOT rolled back")
        if self.wave.on_failure is OnFailure.HOLD:
            notes += self._hold(views)
        for name in p.untouched:
            self.results[name].outcome = "not-reached"
            self.results[name].reason = "untouched: an earlier stage failed"
            if views[name].state is StageState.UNREACHABLE:
                self.results[name].reason += f" (unreachable: {views[name].reason}; never changed by this wave)"
        if p.untouched:
            notes.append(f"{', '.join(p.untouched)} untouched")
        code = EXIT_API if lost else EXIT_FAILED
        return self._result(started, code, p.reason + (f" ({'; '.join(notes)})" if notes else ""))

    def _abort_group(
        self, names: tuple[str, ...], views: Mapping[str, StageView], undo: list[str], lost: list[str]
    ) -> list[str]:
        """Ask the controllers to abort the deliveries the plan names (still going on, or held failed):
        notes for the wave's message. A stage whose controller has not taken the change up yet goes to
        the front of ``undo`` (its old template is written back instead), an unreachable one to ``lost``."""
        notes: list[str] = []
        for name in names:
            kube, stage = self.kubes[name], self.wave.stage(name)
            try:
                deployment = read_stage(kube, stage)
            except StageUnreachable as exc:
                lost.append(name)
                self.results[name].reason = f"unreachable: {exc.error}"
                continue
            if deployment is None:
                continue
            record = read_state(deployment)
            if views[name].state is StageState.DELIVERING and (
                record.phase.terminal or record.revision != views[name].revision
            ):
                undo.insert(0, name)  # the controller has not taken the change up yet: write the old one back
                continue
            request_abort(kube, stage, deployment)
            if views[name].state is not StageState.FAILED:
                mark(kube, stage, self.wid, rolled_back=self.clock())
                self.results[name].outcome = "abort-requested"
                self.results[name].reason = "its delivery was aborted after another stage failed"
            self._note(name, "abort-requested", "abort requested")
            notes.append(f"{name} aborted")
        return notes

    def _hold(self, views: Mapping[str, StageView]) -> list[str]:
        """On-failure hold: the stages the wave moved that passed (or soak) stay on the new version."""
        notes: list[str] = []
        for name, v in views.items():
            if v.ours and v.state in (StageState.PASSED, StageState.SOAKING):
                self.results[name].outcome = "held"
                self.results[name].reason = "kept on the new version (on-failure: hold)"
        held = [n for n, v in views.items() if v.ours and v.state in (StageState.PASSED, StageState.SOAKING)]
        if held:
            notes.append(f"{', '.join(held)} held on the new version")
        return notes

    def _undo(self, name: str, view: StageView) -> tuple[bool, str]:
        """Write the stage's previous template back (deliver delivers it as a change) and wait for it."""
        kube, stage = self.kubes[name], self.wave.stage(name)
        previous = view.marker.previous if view.marker else ""
        if not previous:
            return False, "the marker does not say which revision came before"
        self._note(name, "rolling-back", f"putting revision {previous} back")
        why = write_back(kube, stage, previous, self.wid, self.clock)
        if why is not None:
            return False, why
        result = wait(
            kube,
            stage.namespace,
            stage.app,
            stage.timeout,
            clock=self.clock,
            sleep=self.sleep,
            pin=Pin(revision=previous),
        )
        if result.code == EXIT_OK:
            self._note(name, "rolled-back", f"revision {previous} delivered again")
            return True, f"put back to revision {previous} after a later stage failed"
        return False, f"revision {previous} written back, its delivery: {result.outcome}: {result.reason}"
