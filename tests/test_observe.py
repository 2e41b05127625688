"""observe(): what the planner is told about the cluster, read through the fake API's selectors."""

from __future__ import annotations

import json

from delivery import templates
from delivery.engine.observe import observe, replicasets
from delivery.kube.client import DEPLOYMENTS, PODS, REPLICASETS
from tests.fixture import NAME, NS, Fixture, native_hash, owner_ref, template

V1, V2 = "web:v1", "web:v2"
REV1, REV2 = templates.revision(template(V1)), templates.revision(template(V2))


def delivers_replicaset(f: Fixture, image: str, replicas: int, app: str = NAME) -> dict:
    """A ReplicaSet as deliver makes it: its owner label, a non-controller reference."""
    tpl = templates.with_hash(template(image), templates.revision(template(image)))
    rev = templates.revision(template(image))
    d = f.deployment()
    return f.kube.put(
        REPLICASETS,
        {
            "metadata": {
                "name": f"{app}-{rev}",
                "labels": {templates.OWNER_LABEL: app, templates.REVISION_LABEL: rev},
                "ownerReferences": [dict(owner_ref(d, "Deployment"), controller=False)],
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(tpl["metadata"]["labels"])},
                "template": tpl,
            },
        },
    )


def test_versions_are_the_deployments_own_replicasets_and_delivers_only() -> None:
    f = Fixture()
    d = f.given_deployment("canary", V1, replicas=3)
    delivers_replicaset(f, V2, 1)
    other = dict(d, metadata=dict(d["metadata"], name="web-old", uid="uid-someone-else"))
    f.given_replicaset("web:v0", 2, owner=other)  # same labels, another Deployment's
    f.given_replicaset("web:v9", 1)  # same labels, an orphan
    delivers_replicaset(f, "api:v2", 1, app="api")  # deliver's, for another Deployment
    f.cluster()

    obs = observe(f.kube, f.deployment(), f.now)

    found = {(v.revision, v.owned, v.replicas, v.ready) for v in obs.versions}
    assert found == {(REV1, True, 3, 3), (REV2, False, 1, 1)}
    stable = obs.version(REV1)
    assert stable is not None and stable.pod_hash == native_hash(template(V1)), (
        "the pod-template-hash, not the revision"
    )
    assert stable.template == template(V1), "the template without the pod-template-hash"
    assert f.kube.writes == [], "observe only reads"


def test_pod_health_is_counted_per_version_and_only_for_the_deployments_pods() -> None:
    f = Fixture()
    f.crashing.add(V2)
    f.given_deployment("canary", V1, replicas=2)
    delivers_replicaset(f, V2, 1)
    f.cluster()
    # A crash-looping pod of another app that happens to carry v1's pod-template-hash.
    f.kube.put(
        PODS,
        {
            "metadata": {"name": "api-x", "labels": {"app": "api", templates.HASH_LABEL: native_hash(template(V1))}},
            "status": {
                "containerStatuses": [{"restartCount": 7, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]
            },
        },
    )

    obs = observe(f.kube, f.deployment(), f.now)

    stable, new = obs.version(REV1), obs.deliver_owned(REV2)
    assert stable is not None and new is not None
    assert (stable.health.total, stable.health.ready, stable.health.crashloop, stable.health.restarts) == (2, 2, 0, 0)
    assert (new.health.total, new.health.ready, new.health.crashloop) == (1, 0, 1)
    assert new.health.problem(0) is not None and stable.health.problem(0) is None


def test_a_match_expressions_selector_is_honoured() -> None:
    f = Fixture()
    f.given_deployment("canary", V1, replicas=2)
    d = f.kube.obj(DEPLOYMENTS, NAME)
    d["spec"]["selector"] = {
        "matchLabels": {"app": NAME},
        "matchExpressions": [{"key": "track", "operator": "NotIn", "values": ["shadow"]}],
    }
    f.kube.put(DEPLOYMENTS, d)
    shadow = f.given_replicaset("web:shadow", 1, owner=d, labels={"track": "shadow"})
    f.cluster()

    owned, ours = replicasets(f.kube, f.deployment())

    assert [rs["metadata"]["name"] for rs in owned] == [f"{NAME}-{native_hash(template(V1))}"]
    assert shadow["metadata"]["name"] not in {rs["metadata"]["name"] for rs in owned + ours}
    assert ours == []


def test_the_deployment_fields_the_planner_reads() -> None:
    f = Fixture()
    f.given_deployment("canary", V1, replicas=3)
    f.when_template_changes(V2)
    d = f.kube.obj(DEPLOYMENTS, NAME)
    d["spec"]["paused"] = True
    d["metadata"]["annotations"]["deliver.dev/request"] = json.dumps({"verb": "abort", "id": "r1", "at": 1})
    f.kube.put(DEPLOYMENTS, d)
    f.kube.update_status(
        DEPLOYMENTS,
        NAME,
        {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]},
    )

    obs = observe(f.kube, f.deployment(), f.now, router_weight=20)

    assert (obs.namespace, obs.name, obs.replicas, obs.paused) == (NS, NAME, 3, True)
    assert obs.target_revision == REV2
    assert obs.generation == 2 and obs.observed_generation == 1, "the Deployment controller has not seen v2"
    assert not obs.rollout_complete
    assert obs.deadline_exceeded
    assert (obs.request, obs.request_id, obs.router_weight) == ("abort", "r1", 20)
    assert (obs.total_replicas, obs.ready_replicas, obs.available_replicas) == (3, 3, 3)
