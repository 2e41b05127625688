"""act: each action against the fake API — the objects it writes, only those, once (idempotent)."""

from __future__ import annotations

from typing import Any

import pytest

from delivery import spec as specmod
from delivery import templates
from delivery.engine import act
from delivery.engine.observe import replicasets
from delivery.engine.state import read_state
from delivery.errors import Conflict, DeliverError, KubeError
from delivery.kube.client import DEPLOYMENTS, REPLICASETS, SERVICES
from delivery.routing.base import RouterContext, router_for
from strategies import bluegreen, canary
from strategies.actions import (
    Action,
    AdoptNew,
    DeleteNew,
    DeleteReplicaSet,
    DeleteService,
    RemoveRecord,
    RevertTemplate,
    ScaleNew,
    SetPaused,
    SwitchActive,
)
from strategies.record import DeliveryState, Phase
from tests.fixture import NAME, NS, Fixture, native_hash, template

V1, V2, V3 = "web:v1", "web:v2", "web:v3"
REV1, REV2 = templates.revision(template(V1)), templates.revision(template(V2))
HASH1 = native_hash(template(V1))


def delivering(strategy: str = "canary", **annotations: str) -> Fixture:
    """Given a Deployment at rest on v1 whose template is now v2."""
    f = Fixture()
    if strategy == "blue-green":
        f.given_service(NAME)
    f.given_deployment(strategy, V1, replicas=3, **annotations)
    f.given_delivered()
    f.when_template_changes(V2)
    return f


def _services(f: Fixture, stable_hash: str, new_hash: str) -> tuple[Action, ...]:
    """The Services the planner asks for, for the strategy the Deployment declares."""
    spec = specmod.parse(f.deployment(), lambda name: {})
    planner = bluegreen if spec.strategy.value == "blue-green" else canary
    return planner.services(spec, stable_hash, new_hash)


def run(f: Fixture, *actions: Action, state: DeliveryState | None = None) -> list[Any]:
    """Execute actions with a context read from the cluster now; returns the writes they made."""
    d = f.deployment()
    spec = specmod.parse(d, lambda name: {})
    if state is None:
        state = read_state(d).replace(phase=Phase.PROGRESSING, revision=REV2)
    router = router_for(spec.router.kind, RouterContext(f.kube, NS, NAME, spec.router.name, "", ""))
    ctx = act.Context(f.kube, d, spec, state, router, lambda a: None)
    start = len(f.kube.writes)
    for action in actions:
        act.execute(ctx, action)
    return f.kube.writes[start:]


# ------------------------------------------------------------------ deliver's ReplicaSet


def test_scale_new_creates_delivers_replicaset_once_and_then_only_scales_it() -> None:
    f = delivering()

    [create] = run(f, ScaleNew(2))

    assert (create.verb, create.plural) == ("create", "replicasets")
    [rs] = f.delivers_replicasets()
    assert rs["metadata"]["labels"] == {templates.OWNER_LABEL: NAME, templates.REVISION_LABEL: REV2}
    assert rs["spec"]["selector"] == {"matchLabels": {"app": NAME, templates.HASH_LABEL: REV2}}
    assert rs["spec"]["template"] == templates.with_hash(template(V2), REV2)
    assert rs["spec"]["replicas"] == 2
    [ref] = rs["metadata"]["ownerReferences"]
    assert (ref["uid"], ref["controller"]) == (f.deployment()["metadata"]["uid"], False)

    assert run(f, ScaleNew(2)) == [], "already there: no write"
    [scale] = run(f, ScaleNew(3))
    assert (scale.verb, scale.body["spec"]) == ("patch", {"replicas": 3})
    assert [r["spec"]["replicas"] for r in f.delivers_replicasets()] == [3]


def test_scale_new_writes_nothing_once_the_template_moved_on() -> None:
    f = delivering()
    f.when_template_changes(V3)  # the record still says v2

    assert run(f, ScaleNew(1)) == []
    assert f.delivers_replicasets() == []


def test_delete_new_scales_down_then_deletes_only_delivers_replicasets() -> None:
    f = delivering()
    run(f, ScaleNew(2))
    owned_before = [rs["metadata"]["name"] for rs in f.replicasets(V1)]

    writes = run(f, DeleteNew())

    assert [(w.verb, w.plural) for w in writes] == [("patch", "replicasets"), ("delete", "replicasets")]
    assert writes[0].body == {"spec": {"replicas": 0}}, "pods go before the ReplicaSet"
    assert f.delivers_replicasets() == []
    assert [rs["metadata"]["name"] for rs in f.replicasets(V1)] == owned_before
    assert run(f, DeleteNew()) == []


def test_delete_new_keeps_the_revision_it_is_told_to_keep() -> None:
    f = delivering()
    run(f, ScaleNew(1))

    assert run(f, DeleteNew(keep_revision=REV2)) == []
    assert len(f.delivers_replicasets()) == 1


def test_scale_new_judges_nothing_when_its_name_is_taken() -> None:
    # a ReplicaSet of the Deployment's holding the name (an earlier delivery's, adopted): removing it
    # is the planner's call (DeleteReplicaSet before ScaleNew); act only reports the lost race
    f = delivering()
    run(f, ScaleNew(1), AdoptNew())
    [taken] = [rs for rs in f.replicasets(V2)]
    f.kube.patch(REPLICASETS, NS, taken["metadata"]["name"], {"spec": {"replicas": 0}})
    start = len(f.kube.writes)

    with pytest.raises(Conflict):
        run(f, ScaleNew(1))

    assert [w.verb for w in f.kube.writes[start:]] == ["create"], "nothing deleted on act's own judgement"
    [delete, create] = run(f, DeleteReplicaSet(taken["metadata"]["name"]), ScaleNew(1))
    assert (delete.verb, create.verb) == ("delete", "create")


def test_delete_replicaset_deletes_it_as_it_is_and_once() -> None:
    f = delivering()
    run(f, ScaleNew(2))
    name = f.delivers_replicasets()[0]["metadata"]["name"]

    [delete] = run(f, DeleteReplicaSet(name))

    assert (delete.verb, delete.plural, delete.name) == ("delete", "replicasets", name), "not scaled down first"
    assert f.delivers_replicasets() == []
    run(f, DeleteReplicaSet(name))  # gone already: not an error


def test_adopt_new_hands_the_replicaset_to_the_deployment() -> None:
    f = delivering()
    run(f, ScaleNew(3))

    [adopt] = run(f, AdoptNew())

    assert adopt.plural == "replicasets" and adopt.body["metadata"]["resourceVersion"]
    owned, ours = replicasets(f.kube, f.deployment())
    assert ours == []
    adopted = [rs for rs in owned if templates.revision(rs["spec"]["template"]) == REV2]
    assert len(adopted) == 1
    assert templates.OWNER_LABEL not in adopted[0]["metadata"]["labels"]
    assert [r["controller"] for r in adopted[0]["metadata"]["ownerReferences"]] == [True]


def test_adopt_new_is_guarded_by_the_replicasets_resource_version() -> None:
    f = delivering()
    run(f, ScaleNew(3))
    name = f.delivers_replicasets()[0]["metadata"]["name"]
    f.kube.before_write(lambda k: k.update_status(REPLICASETS, name, {"readyReplicas": 3}))

    with pytest.raises(Conflict):
        run(f, AdoptNew())

    assert len(f.delivers_replicasets()) == 1, "still deliver's: the next pass adopts what it reads then"


# ------------------------------------------------------------------ the Deployment's template


def test_revert_template_writes_the_stable_template_back() -> None:
    f = delivering()

    [write] = run(f, RevertTemplate(REV1, None))

    assert (write.verb, write.plural) == ("patch", "deployments")
    assert f.image() == V1
    assert templates.HASH_LABEL not in f.deployment()["spec"]["template"]["metadata"]["labels"]
    assert run(f, RevertTemplate(REV1, None)) == [], "already the stable template"


def test_revert_template_never_overwrites_a_template_written_meanwhile() -> None:
    f = delivering()

    def user_writes_v3(k: Any) -> None:
        f.when_template_changes(V3)

    f.kube.before_write(user_writes_v3, match=lambda w: w.plural == "deployments")
    with pytest.raises(KubeError) as failed:
        run(f, RevertTemplate(REV1, None))

    assert failed.value.status == 422
    assert f.image() == V3


def test_revert_template_uses_the_records_copy_when_the_stable_replicaset_is_gone() -> None:
    f = delivering()
    for rs in f.replicasets(V1):
        f.kube.remove(REPLICASETS, rs["metadata"]["name"])

    with pytest.raises(DeliverError):
        run(f, RevertTemplate(REV1, None))
    assert f.image() == V2

    run(f, RevertTemplate(REV1, template(V1)))
    assert f.image() == V1


def test_remove_record_unpauses_in_the_same_write_guarded_by_the_planned_resource_version() -> None:
    f = delivering()
    planned = f.deployment()["metadata"]["resourceVersion"]
    f.kube.patch(DEPLOYMENTS, NS, NAME, {"metadata": {"labels": {"someone": "wrote"}}})

    with pytest.raises(Conflict):
        run(f, RemoveRecord(planned))
    assert specmod.STATE in f.deployment()["metadata"]["annotations"]

    [write] = run(f, RemoveRecord(f.deployment()["metadata"]["resourceVersion"]))
    assert (write.verb, write.plural) == ("patch", "deployments")
    d = f.deployment()
    assert specmod.STATE not in d["metadata"]["annotations"] and d["spec"]["paused"] is False


def test_set_paused_writes_only_a_change() -> None:
    f = delivering()
    assert f.deployment()["spec"]["paused"] is True

    assert run(f, SetPaused(True)) == []
    [write] = run(f, SetPaused(False))
    assert write.body == {"spec": {"paused": False}}
    assert f.deployment()["spec"]["paused"] is False


# ------------------------------------------------------------------ Services


def test_blue_green_services_preview_is_created_and_the_users_active_service_left_alone() -> None:
    f = delivering("blue-green")
    active_before = f.kube.obj(SERVICES, NAME)

    [create] = run(f, *_services(f, HASH1, REV2))

    assert (create.verb, create.name) == ("create", f"{NAME}-preview")
    preview = f.kube.obj(SERVICES, f"{NAME}-preview")
    assert preview["spec"]["selector"] == {"app": NAME, templates.HASH_LABEL: REV2}
    assert preview["spec"]["ports"] == active_before["spec"]["ports"], "ports copied from the active Service"
    assert preview["metadata"]["labels"] == {templates.OWNER_LABEL: NAME}
    assert [r["controller"] for r in preview["metadata"]["ownerReferences"]] == [False]
    assert f.kube.obj(SERVICES, NAME) == active_before
    assert run(f, *_services(f, HASH1, REV2)) == []


def test_switch_active_is_one_patch_of_the_selector() -> None:
    f = delivering("blue-green")

    [switch] = run(f, SwitchActive(NAME, REV2))

    assert (switch.verb, switch.name, switch.body) == (
        "patch",
        NAME,
        {"spec": {"selector": {templates.HASH_LABEL: REV2}}},
    )
    assert f.kube.obj(SERVICES, NAME)["spec"]["selector"] == {"app": NAME, templates.HASH_LABEL: REV2}
    assert run(f, SwitchActive(NAME, REV2)) == []


def test_switch_active_creates_the_active_service_when_there_is_none() -> None:
    f = Fixture()
    f.given_deployment("blue-green", V1, replicas=2)
    f.given_delivered()

    run(f, SwitchActive(NAME, HASH1))

    svc = f.kube.obj(SERVICES, NAME)
    assert svc["spec"]["selector"] == {"app": NAME, templates.HASH_LABEL: HASH1}
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}]


def test_a_canary_without_a_router_needs_no_service() -> None:
    f = delivering()

    assert run(f, *_services(f, HASH1, REV2)) == []


def test_delete_service_deletes_it_once() -> None:
    f = delivering("blue-green")
    run(f, *_services(f, HASH1, REV2))
    preview = f"{NAME}-preview"
    assert (SERVICES.plural, NS, preview) in f.kube.objects

    [delete] = run(f, DeleteService(preview))

    assert (delete.verb, delete.plural, delete.name) == ("delete", "services", preview)
    assert (SERVICES.plural, NS, preview) not in f.kube.objects
    run(f, DeleteService(preview))  # gone already: not an error
