"""The next move of a wave, from its observed stages (``plan``). Pure.

The first group (a stage, or a ``parallel`` list) with a stage not yet passed runs; a failed stage
ends the wave and says which earlier stages to put back (``on-failure: rollback``) or keep
(``hold``) and which deliveries to abort; later stages stay untouched. A stage whose cluster cannot
be read stops the wave, unless a rollback never needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from delivery.wave.file import OnFailure, Wave
from delivery.wave.observe import StageState, StageView


@dataclass(frozen=True)
class WavePlan:
    """What the wave does next. ``outcome``: "run" (the stages in ``run``), "passed", "failed" or "unreachable"."""

    outcome: str
    reason: str
    run: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    undo: tuple[str, ...] = ()  # passed stages of this wave to put back, the latest first
    abort: tuple[str, ...] = ()  # deliveries of this wave to abort (still going, or held failed)
    untouched: tuple[str, ...] = ()  # stages the wave never reached
    # stages whose API server cannot be read and which this wave may have changed: a rollback
    # cannot know whether they need putting back (the run exits 4: run the wave again to finish)
    unreachable: tuple[str, ...] = ()


def plan(wave: Wave, views: Mapping[str, StageView], until: str | None = None) -> WavePlan:
    """The next move of the wave, from the observed stages. Pure."""
    stages = wave.stages
    lost = tuple(s.name for s in stages if views[s.name].state is StageState.UNREACHABLE)
    failed = tuple(s.name for s in stages if views[s.name].state is StageState.FAILED)
    rolled = tuple(s.name for s in stages if views[s.name].state is StageState.ROLLED_BACK)
    if failed or rolled:
        first = failed[0] if failed else rolled[0]
        reason = (
            f"stage {first} failed: {views[first].reason}"
            if failed
            else f"stage {first} was put back by this wave after a failure"
        )
        at = wave.group_of(first)
        # A stage that cannot be read matters only if this wave may have changed it: it is in a group
        # up to the failed one, or up to the last group where a readable stage carries this wave's
        # change. A stage beyond both was never reached: its rollback is not needed (issue 24).
        reached = max([at] + [wave.group_of(s.name) for s in stages if views[s.name].ours])
        unknown = tuple(n for n in lost if wave.group_of(n) <= reached)
        untouched = tuple(
            s.name
            for g in wave.groups[at:]
            for s in g
            if views[s.name].state is StageState.PENDING
            or (views[s.name].state is StageState.UNREACHABLE and s.name not in unknown)
        )
        undo: tuple[str, ...] = ()
        abort: tuple[str, ...] = ()
        if wave.on_failure is OnFailure.ROLLBACK:
            reach = [s for g in wave.groups[: at + 1] for s in g]
            undo = tuple(
                s.name
                for s in reversed(reach)
                if views[s.name].ours and views[s.name].state in (StageState.PASSED, StageState.SOAKING)
            )
            abort = tuple(
                s.name
                for s in reach
                if views[s.name].ours
                and (
                    views[s.name].state is StageState.DELIVERING
                    or (views[s.name].state is StageState.FAILED and views[s.name].held)
                )
            )
        if wave.on_failure is not OnFailure.ROLLBACK:
            unknown = ()
        return WavePlan(
            "failed",
            reason,
            failed=failed or rolled,
            undo=undo,
            abort=abort,
            untouched=untouched,
            unreachable=unknown,
        )
    if lost:
        # nothing failed that can be seen: no stage is started while a cluster cannot be read
        return WavePlan("unreachable", f"stage {lost[0]}: {views[lost[0]].reason}", unreachable=lost)
    last = wave.group_of(until) if until else len(wave.groups) - 1
    for i, group in enumerate(wave.groups):
        todo = tuple(s.name for s in group if views[s.name].state is not StageState.PASSED)
        if not todo:
            continue
        if i > last:
            return WavePlan(
                "passed",
                f"stages up to {until} passed; {len(wave.stages) - sum(len(g) for g in wave.groups[: last + 1])} "
                "left for a later run",
                untouched=tuple(s.name for g in wave.groups[i:] for s in g),
            )
        return WavePlan("run", f"stage{'s' if len(todo) > 1 else ''} {', '.join(todo)}", run=todo)
    return WavePlan("passed", f"all {len(stages)} stages passed")
