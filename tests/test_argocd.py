"""deliver's Argo CD Lua (gitops/argocd/argocd-cm.yaml) under a real Lua 5.1, Argo CD's contract.

Objects recorded from the local control plane in each phase (tests/data/argocd_objects.json, by
e2e/test_gitops.py with DELIVER_RECORD_ARGOCD) and records made from the model for every phase
and hold reason; the Lua's copies of deliver's rules (request phases, the steps and strategy
checks, the request format) are checked against the Python they repeat.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from delivery import spec as specmod
from delivery.state import encode_state, read_request
from e2e.argocd import RENDERED, ArgoLua, render
from strategies.model import DeliveryState, HoldReason, Phase
from strategies.requests import ALLOWED

RECORDED = json.loads((Path(__file__).parent / "data" / "argocd_objects.json").read_text())


@pytest.fixture(scope="module")
def lua() -> ArgoLua:
    return ArgoLua()


def managed(state: DeliveryState | None = None, steps: str = "50,pause,100", **annotations: str) -> dict[str, Any]:
    """A paused canary Deployment whose pods are all updated and available, with this record."""
    ann = {"deliver.dev/strategy": "canary", "deliver.dev/steps": steps, **annotations}
    if state is not None:
        ann["deliver.dev/state"] = encode_state(state)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "generation": 4, "resourceVersion": "812", "annotations": ann},
        "spec": {
            "replicas": 3,
            "paused": True,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "a"}]},
            },
        },
        "status": {"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3},
    }


def test_the_rendered_argocd_cm_is_current() -> None:
    assert RENDERED.read_text() == render(), "run `python -m e2e.argocd` after editing gitops/argocd/*.lua"


# what each live object of the e2e run must show in Argo CD: (health, actions offered)
LIVE = {
    "at-rest": ("Healthy", set()),
    "unmanaged": ("Healthy", set()),
    "progressing": ("Progressing", {"promote", "abort"}),
    "paused-at-gate": ("Suspended", {"promote", "abort"}),
    "succeeded": ("Healthy", set()),
    "rolled-back": ("Degraded", {"retry"}),
    "self-heal-refused": ("Degraded", {"retry"}),
    "aborted": ("Degraded", {"retry"}),
    "invalid-steps": ("Degraded", set()),
}


@pytest.mark.parametrize("label", sorted(LIVE))
def test_recorded_live_objects(lua: ArgoLua, label: str) -> None:
    obj = RECORDED[label]
    status, actions = LIVE[label]
    assert lua.health(obj)[0] == status
    assert lua.enabled_actions(obj) == actions


def test_a_paused_deliver_deployment_is_suspended_for_argo_cds_builtin_rules(lua: ArgoLua) -> None:
    """The problem the script solves: without deliver.dev/strategy the same object reads Suspended."""
    obj = copy.deepcopy(RECORDED["at-rest"])
    del obj["metadata"]["annotations"]["deliver.dev/strategy"]
    assert lua.health(obj) == ("Suspended", "Deployment is paused")


EXPECTED = {
    Phase.IDLE: "Healthy",
    Phase.SUCCEEDED: "Healthy",
    Phase.PROGRESSING: "Progressing",
    Phase.PROMOTING: "Progressing",
    Phase.ROLLING_BACK: "Progressing",
    Phase.PAUSED: "Suspended",
    Phase.ROLLED_BACK: "Degraded",
    Phase.ABORTED: "Degraded",
}


@pytest.mark.parametrize("phase", list(Phase))
def test_every_phase_and_hold(lua: ArgoLua, phase: Phase) -> None:
    assert set(EXPECTED) == set(Phase)
    for hold in HoldReason:
        st = DeliveryState(phase=phase, strategy="canary", hold=hold, step=1, weight=50, message="m")
        status, message = lua.health(managed(st))
        expected = "Degraded" if phase is Phase.PAUSED and hold is HoldReason.FAILED else EXPECTED[phase]
        if phase is Phase.PROGRESSING and hold is HoldReason.AWAITING_CONFIRMATION:
            expected = "Suspended"  # an external approval gate (the confirm-promotion hook)
        assert status == expected, (phase, hold, message)
        assert message.startswith(f"deliver canary: {phase.value}") and message.endswith(": m")


@pytest.mark.parametrize("strategy", ["canary", "blue-green"])
def test_a_delivery_awaiting_its_confirm_promotion_hook_reads_suspended(lua: ArgoLua, strategy: str) -> None:
    waiting = "promotion waits for the confirm-promotion hook (https://approvals.example.com/web) to answer 2xx"
    st = DeliveryState(
        phase=Phase.PROGRESSING, strategy=strategy, hold=HoldReason.AWAITING_CONFIRMATION, message=waiting
    )
    declared = {"deliver.dev/strategy": strategy}
    status, message = lua.health(managed(st, **declared))
    assert status == "Suspended" and message.endswith(waiting), message
    moving = DeliveryState(phase=Phase.PROGRESSING, strategy=strategy, message="the switch goes on")
    assert lua.health(managed(moving, **declared))[0] == "Progressing", "only the hold makes it Suspended"


@pytest.mark.parametrize("phase", list(Phase))
def test_actions_are_offered_in_the_phases_deliver_takes_them(lua: ArgoLua, phase: Phase) -> None:
    failed = {"metadata": {"labels": {"app": "web", "phase": "Idle"}}}  # a label named like the record's key
    for failed_template in (None, failed):
        st = DeliveryState(phase=phase, strategy="canary", failed_template=failed_template)
        offered = lua.enabled_actions(managed(st))
        expected = {v for v in ("promote", "abort", "retry") if phase in ALLOWED[v]}
        if failed_template is None:
            expected.discard("retry")
        assert offered == expected, (phase, failed_template)


@pytest.mark.parametrize("verb", ["promote", "abort", "retry"])
def test_an_action_writes_the_request_the_cli_writes(lua: ArgoLua, verb: str) -> None:
    obj = managed(DeliveryState(phase=Phase.PAUSED, strategy="canary", handled_request="abc"))
    out = lua.act(verb, obj)
    got_verb, rid = read_request(out)
    assert (got_verb, bool(rid)) == (verb, True) and rid != "abc"
    assert set(json.loads(out["metadata"]["annotations"]["deliver.dev/request"])) == {"verb", "id", "at"}
    assert out["spec"] == obj["spec"]  # nothing else changes
    newer = copy.deepcopy(obj)
    newer["metadata"]["resourceVersion"] = "813"
    assert read_request(lua.act(verb, newer))[1] != rid  # each request is new to the controller
    bare = managed(None)
    del bare["metadata"]["annotations"]
    assert read_request(lua.act(verb, bare))[0] == verb


STEPS = [
    "50,pause,100",
    "10,20,30",
    "100",
    "5%,50%",
    " 20 , 40 ",
    "pause,50",
    "PAUSE,50,pause,100",
    "50,20",
    "0,50",
    "50,101",
    "",
    "50,,100",
    "pause",
    "pause,pause,50",
    "ten",
    "50,50",
    "-5,50",
    "1.5",
]


@pytest.mark.parametrize("steps", STEPS)
def test_the_steps_check_is_delivers(lua: ArgoLua, steps: str) -> None:
    obj = managed(DeliveryState(phase=Phase.SUCCEEDED, strategy="canary"), steps=steps)
    python = [e.problem for e in specmod.problems(obj) if e.key == specmod.PREFIX + "steps"]
    status, message = lua.health(obj)
    assert (status == "Degraded") == bool(python), (steps, message, python)
    if python:
        assert python[0] in message


@pytest.mark.parametrize("strategy", ["rolling", "canary", "blue-green", "recreate", "canery", "Canary", ""])
def test_the_strategy_check_is_delivers(lua: ArgoLua, strategy: str) -> None:
    obj = managed(DeliveryState(phase=Phase.SUCCEEDED, strategy=strategy), steps="50,100")
    obj["metadata"]["annotations"]["deliver.dev/strategy"] = strategy
    python = [e for e in specmod.problems(obj) if e.key == specmod.STRATEGY]
    assert (lua.health(obj)[0] == "Degraded") == bool(python), strategy
    assert (lua.enabled_actions(obj) == set()) or not python


def test_record_text_survives_the_json_reader(lua: ArgoLua) -> None:
    text = 'p99 ≥ 250 ms, "quoted" \\ back\tslash 🚀'
    st = DeliveryState(phase=Phase.PAUSED, strategy="canary", hold=HoldReason.INCONCLUSIVE, message=text)
    assert lua.health(managed(st))[1].endswith(text)


@pytest.mark.parametrize("raw", ["{", "not json", '{"phase": "Sideways"}', "[1, 2]", '{"phase":"Idle"} x'])
def test_an_unreadable_record_is_degraded(lua: ArgoLua, raw: str) -> None:
    status, message = lua.health(managed(None, **{"deliver.dev/state": raw}))
    assert status == "Degraded" and "deliver.dev/state" in message, message
    assert lua.enabled_actions(managed(None, **{"deliver.dev/state": raw})) == set()


def test_at_rest_with_pods_not_yet_updated_is_progressing(lua: ArgoLua) -> None:
    obj = managed(DeliveryState(phase=Phase.SUCCEEDED, strategy="canary"))
    obj["status"]["updatedReplicas"] = 1
    status, message = lua.health(obj)
    assert status == "Progressing" and "1 out of 3 new replicas" in message


def test_no_record_yet_is_a_plain_deployment(lua: ArgoLua) -> None:
    obj = managed(None)
    obj["spec"]["paused"] = False
    assert lua.health(obj) == ("Healthy", "")


def plain(spec: dict[str, Any], status: dict[str, Any], generation: int = 2) -> dict[str, Any]:
    return {"metadata": {"name": "api", "generation": generation}, "spec": spec, "status": status}


BUILTIN = [
    (
        plain({"replicas": 2}, {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        "Healthy",
    ),
    (plain({"replicas": 2, "paused": True}, {"observedGeneration": 2}), "Suspended"),
    (plain({"replicas": 2}, {"observedGeneration": 1}), "Progressing"),
    (plain({"replicas": 2}, {"observedGeneration": 2, "updatedReplicas": 1, "replicas": 2}), "Progressing"),
    (plain({"replicas": 2}, {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 3}), "Progressing"),
    (
        plain({"replicas": 2}, {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1}),
        "Progressing",
    ),
    (
        plain(
            {"replicas": 2},
            {
                "observedGeneration": 2,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
            },
        ),
        "Degraded",
    ),
]


@pytest.mark.parametrize(("obj", "status"), BUILTIN)
def test_other_deployments_get_argo_cds_builtin_rules(lua: ArgoLua, obj: dict[str, Any], status: str) -> None:
    assert lua.health(obj)[0] == status
    assert lua.enabled_actions(obj) == set()
