import time

from delivery import templates
from delivery.engine.controller import WorkQueue
from delivery.engine.health import pod_health
from strategies.evidence import StepVerdict
from strategies.record import DeliveryState, Phase


def pod(ready=True, restarts=0, waiting="", deleting=False):
    return {
        "metadata": {
            "creationTimestamp": "2026-01-01T00:00:00Z",
            **({"deletionTimestamp": "2026-01-01T00:00:01Z"} if deleting else {}),
        },
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
            "containerStatuses": [
                {"restartCount": restarts, "state": {"waiting": {"reason": waiting}} if waiting else {"running": {}}}
            ],
        },
    }


def test_pod_health_counts_ready_restarts_crashloop_and_image_errors():
    h = pod_health(
        [
            pod(),
            pod(ready=False, restarts=3, waiting="CrashLoopBackOff"),
            pod(ready=False, waiting="ImagePullBackOff"),
            pod(deleting=True, restarts=9),
        ],
        now=1767225610.0,
    )
    assert (h.total, h.ready, h.restarts, h.crashloop, h.image_errors) == (3, 1, 3, 1, 1)
    assert h.oldest_unready_age == 10.0
    assert "pull" in h.problem(0)


def test_template_revision_ignores_pod_template_hash_and_key_order():
    a = {
        "metadata": {"labels": {"app": "x", "pod-template-hash": "abc"}},
        "spec": {"containers": [{"name": "c", "image": "i:1"}]},
    }
    b = {"spec": {"containers": [{"image": "i:1", "name": "c"}]}, "metadata": {"labels": {"app": "x"}}}
    assert templates.revision(a) == templates.revision(b)
    assert len(templates.revision(a)) == 10
    c = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i:2"}]}}
    assert templates.revision(c) != templates.revision(b)
    assert templates.with_hash(b, "h")["metadata"]["labels"]["pod-template-hash"] == "h"
    assert "pod-template-hash" not in b["metadata"]["labels"]  # no mutation


def test_state_round_trips_through_its_annotation_form():
    s = DeliveryState(
        phase=Phase.PAUSED,
        strategy="canary",
        revision="r",
        step=2,
        weight=50,
        verdicts=(StepVerdict(1, "pass", "ok", 12.5, {"n": 3}),),
        failed_template={"a": 1},
    )
    assert DeliveryState.from_dict(s.to_dict()) == s


def test_work_queue_dedupes_and_keeps_the_earliest_due_time():
    q = WorkQueue()
    q.add(("ns", "a"), 5.0)
    q.add(("ns", "a"), 0.0)  # earlier wins
    q.add(("ns", "a"), 3.0)  # later is ignored
    assert q.get(timeout=0.5) == ("ns", "a")
    assert q.get(timeout=0.1) is None
    q.add(("ns", "b"), 0.2)
    started = time.monotonic()
    assert q.get(timeout=2.0) == ("ns", "b")
    assert time.monotonic() - started >= 0.15
