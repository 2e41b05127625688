"""deliver's Argo CD Lua (gitops/argocd/argocd-cm.yaml) in Argo CD's own sandbox, Argo CD's contract.

The scripts run in e2e/argolua (e2e/argocd.py): gopher-lua v1.1.2 with only the libraries Argo CD
opens (package, base, table and a cut-down os; no string, no math). Objects recorded from the
local control plane in each phase (tests/data/argocd_objects.json, by e2e/test_gitops.py with
DELIVER_RECORD_ARGOCD) and records made from the model for every phase and hold reason; the Lua's
copies of deliver's rules (request phases, the steps and strategy checks, the request format) are
checked against the Python they repeat, and its copy of Argo CD's built-in Deployment health
against a restatement of gitops-engine's rules on many plain Deployments.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from delivery import spec as specmod
from delivery.engine.state import encode_state, read_request
from e2e.argocd import (
    ACTIONS_KEY,
    HEALTH_KEY,
    RENDERED,
    RENDERED_HELM,
    RENDERED_OPERATOR,
    ArgoLua,
    LuaError,
    render,
    rendered_files,
    scripts,
)
from strategies.record import DeliveryState, HoldReason, Phase
from strategies.requests import ALLOWED

RECORDED = json.loads((Path(__file__).parent / "data" / "argocd_objects.json").read_text())


@pytest.fixture(scope="module")
def lua() -> ArgoLua:
    return ArgoLua()


def managed(
    state: DeliveryState | None = None, steps: str = "50,pause,100", paused: bool = True, **annotations: str
) -> dict[str, Any]:
    """A canary Deployment whose pods are all updated and available, with this record: paused (the
    older "paused" hold mode) or not (the "policy" mode, where an admission policy holds changes)."""
    ann = {"deliver.dev/strategy": "canary", "deliver.dev/steps": steps, **annotations}
    if state is not None:
        ann["deliver.dev/state"] = encode_state(state)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "generation": 4, "resourceVersion": "812", "annotations": ann},
        "spec": {
            "replicas": 3,
            "paused": paused,
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
    for path, text in rendered_files().items():
        assert path.read_text() == text, f"{path.name}: run `python -m e2e.argocd` after editing gitops/argocd/*.lua"


def test_the_helm_values_and_the_operator_patch_carry_the_same_scripts() -> None:
    import yaml

    cm = yaml.safe_load(render())["data"]
    helm_cm = yaml.safe_load(RENDERED_HELM.read_text())["configs"]["cm"]
    spec = yaml.safe_load(RENDERED_OPERATOR.read_text())["spec"]
    assert helm_cm == {HEALTH_KEY: cm[HEALTH_KEY], ACTIONS_KEY: cm[ACTIONS_KEY]}
    assert spec["resourceHealthChecks"] == [{"group": "apps", "kind": "Deployment", "check": cm[HEALTH_KEY]}]
    assert spec["resourceActions"] == [{"group": "apps", "kind": "Deployment", "action": cm[ACTIONS_KEY]}]


def test_the_harness_opens_what_argo_cd_opens(lua: ArgoLua) -> None:
    """Argo CD (util/lua/lua.go): SkipOpenLibs unless a health check sets useOpenLibs, then package,
    base, table and a cut-down os, reachable only as require("os") (time and date)."""
    probe = (
        'local os_ = require("os")\n'
        "return { status = type(string) .. type(math) .. type(io) .. type(debug) .. type(os) .. type(os_.time) "
        '.. type(os_.exit) .. type(table.concat) .. type(loadstring), message = "" }'
    )
    seen = "nil" * 5 + "function" + "nil" + "function" * 2
    assert lua.run(probe, [{}], "health") == [{"status": seen, "message": ""}]
    assert lua.run(probe, [{}], "action") == [{"status": seen, "message": ""}]
    opened = lua.run(probe, [{}], "health-openlibs")[0]["status"]
    assert opened.startswith("table" * 5), opened  # useOpenLibs: every standard library
    with pytest.raises(LuaError, match="non-table object"):
        lua.run('return {status = string.format("%d", 1)}', [{}], "health")
    with pytest.raises(LuaError, match="non-table object"):
        lua.run('return {status = ("x"):upper()}', [{}], "action")


def test_obj_arrives_as_argo_cd_converts_it(lua: ArgoLua) -> None:
    """JSON null is no value (in maps and in arrays); integers and floats are numbers; empty maps
    and arrays are empty tables; an action's empty map comes back as {} (cleanReturnedObj)."""
    probe = (
        "local n = 0 for _ in pairs(obj.m) do n = n + 1 end\n"
        "return { status = tostring(obj.gone) .. #obj.list .. type(obj.i) .. obj.i .. '/' .. obj.f .. "
        "type(next(obj.empty)) .. type(next(obj.none)) .. n }"
    )
    obj = {"gone": None, "list": [1, None, 2], "i": 3, "f": 0.5, "empty": {}, "none": [], "m": {"a": None, "b": 1}}
    assert lua.run(probe, [obj], "health")[0]["status"] == "nil2number3/0.5nilnil1"
    back = lua.run("return obj", [{"metadata": {"annotations": {}}, "spec": {"list": []}}], "action")[0]
    assert back == {"metadata": {"annotations": {}}, "spec": {"list": []}}


UNOPENED = re.compile(
    r"\b(string|math|io|debug|coroutine|utf8|channel)\s*\.|:\s*(sub|byte|find|format|gsub|match|len)\s*\("
)


@pytest.mark.parametrize("name", ["health", "discovery", "promote", "abort", "retry"])
def test_the_scripts_name_no_library_argo_cd_leaves_closed(name: str) -> None:
    code = "\n".join(line.split("--")[0] for line in scripts()[name].splitlines())
    assert not UNOPENED.search(code), UNOPENED.search(code)


# what each live object of the e2e run must show in Argo CD: (health, actions offered)
LIVE = {
    "at-rest": ("Healthy", set()),  # paused at rest (the "paused" hold mode)
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


# Argo CD health of a managed Deployment whose pods are all updated and available, by phase:
# (paused, the older "paused" hold mode; unpaused, the "policy" mode)
EXPECTED = {
    Phase.IDLE: ("Healthy", "Healthy"),
    Phase.SUCCEEDED: ("Healthy", "Healthy"),
    Phase.PROGRESSING: ("Progressing", "Progressing"),
    Phase.PROMOTING: ("Progressing", "Progressing"),
    Phase.ROLLING_BACK: ("Progressing", "Progressing"),
    Phase.PAUSED: ("Suspended", "Suspended"),  # held for an operator, whatever the hold
    Phase.ROLLED_BACK: ("Degraded", "Healthy"),  # paused: the rejected template is held
    Phase.ABORTED: ("Degraded", "Healthy"),
}


@pytest.mark.parametrize("phase", list(Phase))
def test_every_phase_and_hold(lua: ArgoLua, phase: Phase) -> None:
    assert set(EXPECTED) == set(Phase)
    cases = [(paused, hold) for paused in (True, False) for hold in HoldReason]
    objects = [
        managed(DeliveryState(phase=phase, strategy="canary", hold=hold, step=1, weight=50, message="m"), paused=paused)
        for paused, hold in cases
    ]
    for (paused, hold), (status, message) in zip(cases, lua.health_many(objects), strict=True):
        expected = EXPECTED[phase][0 if paused else 1]
        if phase is Phase.PROGRESSING and hold is HoldReason.AWAITING_CONFIRMATION:
            expected = "Suspended"  # an external approval gate (the confirm-promotion hook)
        assert status == expected, (phase, hold, paused, message)
        assert message == f"deliver canary: {phase.value}: m", message


@pytest.mark.parametrize("phase", list(Phase))
def test_a_progress_deadline_exceeded_is_degraded_in_every_phase(lua: ArgoLua, phase: Phase) -> None:
    obj = managed(DeliveryState(phase=phase, strategy="canary", message="m"), paused=False)
    obj["status"]["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
    assert lua.health(obj) == (
        "Degraded",
        "deliver canary: " + phase.value + ': m; Deployment "web" exceeded its progress deadline',
    )


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
    "match,50,100",
    "mirror,match,20,pause,100",
    "50,match,100",
    "match,match,50",
    "Mirror,50",
    "mirror",
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
    # what a step needs elsewhere (deliver.dev/match, a mirroring router) is left to deliver's Event
    python = [p for p in python if not re.search(r"needs (deliver\.dev/|a router)", p)]
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


TEXTS = [
    'p99 ≥ 250 ms, "quoted" \\ back\tslash 🚀',
    "line\nbreak\r\x01\x1f control",
    "/slashes/ and \\u0041 and }{][,:",
    "日本語のメッセージ",
    "",
    "x" * 600,
]


def test_record_text_survives_the_json_reader(lua: ArgoLua) -> None:
    """The record as deliver writes it (json.dumps: ASCII with \\u escapes, surrogate pairs)."""
    objects = [
        managed(DeliveryState(phase=Phase.PAUSED, strategy="canary", hold=HoldReason.INCONCLUSIVE, message=text))
        for text in TEXTS
    ]
    for text, (status, message) in zip(TEXTS, lua.health_many(objects), strict=True):
        assert status == "Suspended"
        assert message == "deliver canary: Paused" + (": " + text if text else ""), (text, message)


def test_a_record_with_a_large_failed_template_is_read(lua: ArgoLua) -> None:
    """The reader has no string library: it finds each byte by comparison, at a cost that grows with
    the square of the bytes before phase; the Deployment's own keys and strings are read whole."""
    obj = copy.deepcopy(RECORDED["rolled-back"])
    env = [{"name": f"SETTING_{i}", "value": f"value {i}"} for i in range(60)]
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = env
    failed = copy.deepcopy(obj["spec"]["template"])
    failed["spec"]["containers"][0]["image"] = "example.com/web:v3"
    st = DeliveryState(phase=Phase.ROLLED_BACK, strategy="canary", failed_template=failed, message="rolled back")
    obj["metadata"]["annotations"]["deliver.dev/state"] = encode_state(st)
    assert encode_state(st).index('"phase"') == 1, "the record's head comes first (engine/state.py RECORD_HEAD)"
    assert lua.health(obj) == ("Degraded", "deliver canary: RolledBack: rolled back")
    assert lua.enabled_actions(obj) == {"retry"}


def test_a_huge_failed_template_after_the_head_is_read() -> None:
    failed = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "i" * 30000}]}}
    st = DeliveryState(phase=Phase.ROLLED_BACK, strategy="canary", failed_template=failed, message="rolled back")
    obj = managed(st)
    assert ArgoLua().health(obj)[0] == "Degraded"


def test_a_record_too_long_to_read_is_unknown_not_an_error(lua: ArgoLua) -> None:
    """A record written by an older deliver (keys sorted, phase after a large template)."""
    failed = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "i" * 30000}]}}
    st = DeliveryState(phase=Phase.ROLLED_BACK, strategy="canary", failed_template=failed, message="rolled back")
    obj = managed(st)
    obj["metadata"]["annotations"]["deliver.dev/state"] = json.dumps(st.to_dict(), sort_keys=True)
    status, message = lua.health(obj)
    assert status == "Unknown" and "too long for Argo CD's Lua to read" in message, message
    assert lua.enabled_actions(obj) == set()


UNREADABLE = [
    "{",
    "not json",
    '{"phase": "Sideways"}',
    "[1, 2]",
    '{"phase":"Idle"} x',
    '{"phase":"Idle"',
    '{"hold":"","looks":{"a":[1,2',
    '{"message":"unterminated',
    '{"message":"bad \\q escape","phase":"Idle"}',
    '{"phase":3}',
]


@pytest.mark.parametrize("raw", UNREADABLE)
def test_an_unreadable_record_is_degraded(lua: ArgoLua, raw: str) -> None:
    status, message = lua.health(managed(None, **{"deliver.dev/state": raw}))
    assert status == "Degraded" and "deliver.dev/state" in message, message
    assert lua.enabled_actions(managed(None, **{"deliver.dev/state": raw})) == set()


def test_a_record_written_in_another_key_order_is_read_whole(lua: ArgoLua) -> None:
    raw = '{"phase":"Paused","hold":"Operator","message":"paused by ops"}'
    assert lua.health(managed(None, **{"deliver.dev/state": raw})) == (
        "Suspended",
        "deliver canary: Paused: paused by ops",
    )


def test_at_rest_with_pods_not_yet_updated_is_progressing(lua: ArgoLua) -> None:
    obj = managed(DeliveryState(phase=Phase.SUCCEEDED, strategy="canary"))
    obj["status"]["updatedReplicas"] = 1
    status, message = lua.health(obj)
    assert status == "Progressing" and "1 out of 3 new replicas" in message


def test_no_record_yet_is_at_rest(lua: ArgoLua) -> None:
    """Before deliver's first record: the built-in answer as if not paused, in either hold mode."""
    for paused in (True, False):
        assert lua.health(managed(None, paused=paused)) == ("Healthy", "")
        obj = managed(None, paused=paused)
        obj["status"]["availableReplicas"] = 2
        assert lua.health(obj) == (
            "Progressing",
            "Waiting for rollout to finish: 2 of 3 updated replicas are available...",
        )


def builtin_health(obj: dict[str, Any]) -> tuple[str, str]:
    """Argo CD's built-in Deployment health, restated from gitops-engine pkg/health/health_deployment.go
    (getAppsv1DeploymentHealth): (status, message), the message "" when Healthy."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if spec.get("paused"):
        return "Suspended", "Deployment is paused"
    if (obj["metadata"].get("generation") or 0) > (status.get("observedGeneration") or 0):
        return (
            "Progressing",
            "Waiting for rollout to finish: observed deployment generation less than desired generation",
        )
    progressing = [c for c in status.get("conditions") or [] if c.get("type") == "Progressing"]
    updated, replicas = status.get("updatedReplicas") or 0, status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    wait = "Waiting for rollout to finish: "
    if progressing and progressing[0].get("reason") == "ProgressDeadlineExceeded":
        return "Degraded", f'Deployment "{obj["metadata"].get("name", "")}" exceeded its progress deadline'
    if spec.get("replicas") is not None and updated < spec["replicas"]:
        return "Progressing", f"{wait}{updated} out of {spec['replicas']} new replicas have been updated..."
    if replicas > updated:
        return "Progressing", f"{wait}{replicas - updated} old replicas are pending termination..."
    if available < updated:
        return "Progressing", f"{wait}{available} of {updated} updated replicas are available..."
    return "Healthy", ""


CONDITIONS: list[list[dict[str, str]] | None] = [
    None,
    [],
    [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
    [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}],
    [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
    [{"type": "Progressing", "status": "Unknown", "reason": "DeploymentPaused"}],
    [  # only the first Progressing condition counts
        {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"},
    ],
]


def plain_deployments(count: int, seed: int = 23) -> list[dict[str, Any]]:
    """Plain Deployments over the fields the built-in rules read (a seeded sample of the grid)."""
    rng = random.Random(seed)
    grid = list(
        itertools.product(
            (None, False, True),  # spec.paused
            (None, 0, 1, 3),  # spec.replicas
            ((1, 1), (2, 1), (2, 2), (None, None), (3, None)),  # generation, observedGeneration
            (None, 0, 1, 3, 4),  # status.replicas
            (None, 0, 1, 3),  # updatedReplicas
            (None, 0, 1, 3),  # availableReplicas
            range(len(CONDITIONS)),
        )
    )
    found = []
    for paused, replicas, (gen, observed), have, updated, available, cond in rng.sample(grid, count):
        spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "api"}}}
        meta: dict[str, Any] = {"name": "api-" + str(len(found)), "namespace": "shop"}
        status: dict[str, Any] = {}
        for holder, key, value in (
            (spec, "paused", paused),
            (spec, "replicas", replicas),
            (meta, "generation", gen),
            (status, "observedGeneration", observed),
            (status, "replicas", have),
            (status, "updatedReplicas", updated),
            (status, "availableReplicas", available),
            (status, "conditions", CONDITIONS[cond]),
        ):
            if value is not None:
                holder[key] = value
        found.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec, "status": status})
    return found


def test_unmanaged_deployments_get_exactly_the_builtin_answer(lua: ArgoLua) -> None:
    """The override replaces Argo CD's check for every Deployment: without deliver.dev/strategy its
    answer (status and message) is the built-in one, on synthesized and recorded Deployments."""
    objects = plain_deployments(600)
    for label, obj in RECORDED.items():
        bare = copy.deepcopy(obj)
        bare["metadata"]["annotations"] = {
            k: v for k, v in (bare["metadata"].get("annotations") or {}).items() if not k.startswith("deliver.dev/")
        }
        objects.append(bare)
        assert label
    got = lua.health_many(objects)
    wrong = [
        (o["metadata"], o["spec"].get("paused"), o["status"], g)
        for o, g in zip(objects, got, strict=True)
        if g != builtin_health(o)
    ]
    assert not wrong, wrong[:3]
    assert {g[0] for g in got} == {"Healthy", "Progressing", "Suspended", "Degraded"}
    assert all(flags == set() for flags in map(lua.enabled_actions, objects[:20]))


def test_managed_at_rest_is_the_builtin_answer_as_if_not_paused(lua: ArgoLua) -> None:
    objects = plain_deployments(300, seed=24)
    for obj in objects:
        obj["metadata"]["annotations"] = {"deliver.dev/strategy": "rolling"}
    got = lua.health_many(objects)
    for obj, (status, message) in zip(objects, got, strict=True):
        unpaused = copy.deepcopy(obj)
        unpaused["spec"]["paused"] = False
        assert (status, message) == builtin_health(unpaused), (obj, status, message)
    for obj in objects:
        obj["metadata"]["annotations"]["deliver.dev/state"] = encode_state(
            DeliveryState(phase=Phase.SUCCEEDED, strategy="rolling", message="done")
        )
    for obj, (status, message) in zip(objects, lua.health_many(objects), strict=True):
        unpaused = copy.deepcopy(obj)
        unpaused["spec"]["paused"] = False
        want, why = builtin_health(unpaused)
        assert (status, message) == (want, "deliver rolling: Succeeded: done" + ("; " + why if why else ""))


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
    assert lua.health(obj) == builtin_health(obj) and builtin_health(obj)[0] == status
    assert lua.enabled_actions(obj) == set()
