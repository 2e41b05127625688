"""Notifications (delivery/integrations/notify.py) against a real local HTTP receiver (e2e/receiver.py).

Deliveries run on the one fake API (tests/fixture.py); the webhooks are real HTTP requests to a real
server in a thread: bodies, Slack format, signatures, retries with backoff, a dead receiver, a full
queue, and the counters /metrics shows.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from delivery import templates
from delivery.integrations.egress import LOOPBACK
from delivery.integrations.notify import Notification, Notifier, Target
from delivery.settings import Notifications, Settings
from e2e.receiver import Receiver, Request, namespace_key, verified
from strategies.actions import Analyse
from strategies.evidence import StepVerdict
from strategies.record import DeliveryState
from strategies.spec import DeliverySpec
from tests.fixture import NAME, NS, Fixture, template

V1, V2 = "web:v1", "web:v2"
REV2 = templates.revision(template(V2))


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def value(registry: CollectorRegistry, name: str, target: str | None = None) -> float:
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(name) and (target is None or f'target="{target}"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def canary(notifier: Notifier, **annotations: str) -> Fixture:
    f = Fixture()
    f.given_deployment("canary", V1, replicas=3, **{"steps": "20,50,100", "interval": "30s", **annotations})
    f.given_delivered()
    f.reconciler.notifier = notifier
    return f


def backoff(seconds: float) -> Settings:
    """The default timings with a shorter (or the default) backoff between attempts."""
    return Settings(notifications=Notifications(backoff=seconds))


def kinds(requests: list[Request]) -> list[str]:
    return [r.json()["kind"] for r in requests]


def test_a_delivery_sends_each_phase_change_to_the_deployments_webhook_as_its_event_says(rx: Receiver) -> None:
    notifier = Notifier(egress=LOOPBACK, settings=backoff(0.05))
    f = canary(notifier, notify_webhook=rx.url("/hook"))
    f.when_template_changes(V2)

    f.when_settled()
    assert notifier.drain(10)

    got = rx.at("/hook")
    assert kinds(got) == ["started", "step-passed", "step-passed", "promoting", "promoted"]
    bodies = [r.json() for r in got]
    events = [e for e in f.events() if e["reason"] in {b["reason"] for b in bodies}]
    assert [b["message"] for b in bodies] == [e["message"] for e in events], "the same words as the Events"
    done = bodies[-1]
    assert (done["namespace"], done["deployment"], done["reason"], done["phase"]) == (
        NS,
        NAME,
        "DeliverySucceeded",
        "Succeeded",
    )
    assert done["revision"] == REV2 and done["strategy"] == "canary" and done["time"].endswith("Z")
    assert len({b["id"] for b in bodies}) == 5, "each notification has its own id"
    assert all("x-deliver-signature" not in r.headers for r in got), "no secret, no signature"


def test_a_rollback_notification_carries_the_verdicts_numbers_in_json_and_slack(rx: Receiver) -> None:
    notifier = Notifier(egress=LOOPBACK, settings=backoff(0.05))
    f = canary(
        notifier,
        notify_webhook=rx.url("/json"),
        notify_slack=rx.url("/slack"),
        analysis="error-rate",
        analysis_metrics="envoy",
    )

    def analyser(spec: DeliverySpec, state: DeliveryState, d: object, a: Analyse) -> StepVerdict:
        details = {"error-rate": {"new": 0.12, "stable": 0.01, "e": 41.5}}
        return StepVerdict(a.step, "fail", "error-rate: new 12.0% vs stable 1.0%", f.now, details)

    f.reconciler.analyser = analyser
    f.when_template_changes(V2)
    f.when_settled()
    assert notifier.drain(10)

    rolled = [r.json() for r in rx.at("/json") if r.json()["kind"] == "rolled-back"]
    assert len(rolled) == 1
    assert rolled[0]["type"] == "Warning" and "analysis failed" in rolled[0]["message"]
    assert rolled[0]["verdict"]["outcome"] == "fail"
    assert rolled[0]["verdict"]["details"]["error-rate"] == {"new": 0.12, "stable": 0.01, "e": 41.5}
    slack = [r.json() for r in rx.at("/slack")]
    assert len(slack) == len(rx.at("/json")), "each target gets every notification"
    text = json.dumps(slack[-2:])
    assert "rolled-back" in text and "error-rate: new 12.0% vs stable 1.0%" in text
    assert all(set(s) == {"text", "blocks"} for s in slack)


def test_a_signed_notification_verifies_with_the_secret_and_the_timestamp(rx: Receiver) -> None:
    secret = b"s3cret"
    notifier = Notifier((Target(rx.url("/signed")),), secret=secret, egress=LOOPBACK)
    f = canary(notifier)
    f.when_template_changes(V2)
    f.when_reconciled()
    assert notifier.drain(10)

    [req] = rx.at("/signed")
    ts = req.headers["x-deliver-timestamp"]
    assert abs(int(ts) - time.time()) < 60
    assert verified(namespace_key(secret, NS), req.headers, req.body)
    assert not verified(namespace_key(secret, "other"), req.headers, req.body), "one namespace's key only"


def test_the_delivery_id_and_time_are_signed_with_the_body(rx: Receiver) -> None:
    """A receiver that checks the signature cannot be fed a replay under another delivery id or time."""
    notifier = Notifier((Target(rx.url("/signed")),), secret=b"s3cret", egress=LOOPBACK)
    f = canary(notifier)
    f.when_template_changes(V2)
    f.when_reconciled()
    assert notifier.drain(10)
    [req] = rx.at("/signed")
    key = namespace_key(b"s3cret", NS)
    assert verified(key, req.headers, req.body)
    assert not verified(key, {**req.headers, "x-deliver-delivery": "0" * 32}, req.body)
    moved = str(int(req.headers["x-deliver-timestamp"]) - 7)
    assert not verified(key, {**req.headers, "x-deliver-timestamp": moved}, req.body)
    assert not verified(key, {**req.headers, "x-deliver-namespace": "other"}, req.body)


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(rx: Receiver) -> None:
    calls: list[float] = []

    def flaky(r: Request) -> int:
        calls.append(time.monotonic())
        return 503 if len(calls) <= 2 else 200

    rx.answer("/flaky", flaky)
    registry = CollectorRegistry()
    notifier = Notifier((Target(rx.url("/flaky")),), registry=registry, egress=LOOPBACK, settings=backoff(0.2))
    f = canary(notifier)
    f.when_template_changes(V2)
    f.when_reconciled()
    assert notifier.drain(10)

    assert [r.status for r in rx.at("/flaky")] == [503, 503, 200]
    assert len({r.json()["id"] for r in rx.at("/flaky")}) == 1, "a retry is the same notification"
    assert calls[1] - calls[0] >= 0.18 and calls[2] - calls[1] >= 0.38, "the wait doubles"
    assert value(registry, "deliver_notifications_sent_total", rx.base) == 1
    assert value(registry, "deliver_notification_retries_total", rx.base) == 2
    assert value(registry, "deliver_notifications_failed_total", rx.base) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_receiver_that_is_down_never_blocks_a_pass_and_is_counted_as_failed() -> None:
    down = f"http://127.0.0.1:{free_port()}"
    registry = CollectorRegistry()
    # sent from the passes, 5 notifications x 3 attempts with 1 s + 2 s of backoff would take 15 s
    notifier = Notifier((Target(down + "/x"),), registry=registry, attempts=3, egress=LOOPBACK, settings=backoff(1.0))
    f = canary(notifier)
    f.when_template_changes(V2)

    started = time.monotonic()
    f.when_settled()
    took = time.monotonic() - started
    assert notifier.drain(20)

    assert f.record()["phase"] == "Succeeded", "the delivery goes on without the receiver"
    assert value(registry, "deliver_notifications_failed_total", down) == 5, "5 notifications, each given up"
    assert value(registry, "deliver_notification_retries_total", down) == 10, "after 3 attempts each"
    assert value(registry, "deliver_notifications_sent_total", down) == 0
    assert "DeliverySucceeded" in f.reasons(), "the Event remains"
    assert took < 3, f"passes waited for the receiver ({took:.1f}s)"


def test_a_full_queue_drops_and_counts_instead_of_waiting(rx: Receiver) -> None:
    rx.delay("/slow", 2.0)  # waiting for room in the queue would hold the passes for 3 x 2 s
    registry = CollectorRegistry()
    notifier = Notifier((Target(rx.url("/slow")),), registry=registry, capacity=2, senders=1, egress=LOOPBACK)
    f = canary(notifier)
    f.when_template_changes(V2)

    started = time.monotonic()
    f.when_settled()
    assert time.monotonic() - started < 3, "a pass never waits for the queue"
    assert notifier.drain(20)

    dropped = value(registry, "deliver_notifications_dropped_total")
    sent = value(registry, "deliver_notifications_sent_total", rx.base)
    assert dropped >= 1 and sent + dropped == 5 and len(rx.at("/slow")) == sent


def test_events_that_are_not_phase_changes_are_not_sent(rx: Receiver) -> None:
    notifier = Notifier((Target(rx.url("/all")),), egress=LOOPBACK)
    f = canary(notifier)
    f.when_annotated(steps="20,ten,100")
    f.when_template_changes(V2)
    f.when_reconciled()
    assert notifier.drain(5)
    assert f.reasons() == ["InvalidAnnotation"] and rx.at("/all") == []


@pytest.mark.parametrize(
    "url,needle",
    [
        ("ftp://example.com/x", "not an http"),
        ("https://user:pw@example.com/x", "credentials"),
        ("https:///nohost", "not an http"),
        ("https://example.com:99999/x", "invalid port"),
        ("https://a.example/x, ", "not a URL"),
    ],
)
def test_a_bad_webhook_url_is_an_invalid_annotation_and_no_action(url: str, needle: str) -> None:
    f = Fixture()
    f.given_deployment("canary", V1, replicas=3, steps="20,100")
    f.given_delivered()
    f.when_annotated(notify_webhook=url)
    f.when_template_changes(V2)
    before = f.deployment()

    f.when_reconciled()

    assert f.deployment() == before and f.delivers_replicasets() == []
    [warning] = f.events("InvalidAnnotation", "Warning")
    assert "deliver.dev/notify-webhook" in warning["message"] and needle in warning["message"]


def test_the_chart_passes_cluster_wide_notifications_and_the_secret_from_secrets() -> None:
    from tests.test_chart import kinds, render

    def env(*sets: str) -> tuple[dict[str, Any], dict[str, Any]]:
        by = kinds(render(*sets))
        [dep] = by["Deployment"]
        found = {
            e["name"]: e.get("value", e.get("valueFrom"))
            for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        return found, {s["metadata"]["name"]: s for s in by.get("Secret", [])}

    plain, secrets = env()
    assert not {"DELIVER_NOTIFY_WEBHOOK", "DELIVER_NOTIFY_SLACK", "DELIVER_WEBHOOK_SECRET"} & set(plain)
    assert secrets == {}
    got, secrets = env(
        "notifications.webhooks={https://a.example/x,https://b.example/y}",
        "notifications.slackSecret.name=slack",
        "notifications.secret.name=hmac",
    )
    assert got["DELIVER_NOTIFY_WEBHOOK"] == {"secretKeyRef": {"name": "rel-deliver-notifications", "key": "webhooks"}}
    stored = base64.b64decode(secrets["rel-deliver-notifications"]["data"]["webhooks"]).decode()
    assert stored == "https://a.example/x https://b.example/y"
    assert got["DELIVER_NOTIFY_SLACK"] == {"secretKeyRef": {"name": "slack", "key": "url"}}
    assert got["DELIVER_WEBHOOK_SECRET"] == {"secretKeyRef": {"name": "hmac", "key": "secret"}}
    got, secrets = env("notifications.slack={https://s.example/T0/B0/XXXX}")
    assert got["DELIVER_NOTIFY_SLACK"] == {"secretKeyRef": {"name": "rel-deliver-notifications", "key": "slack"}}
    assert "XXXX" not in str(kinds(render("notifications.slack={https://s.example/T0/B0/XXXX}"))["Deployment"])
    got, secrets = env("notifications.existingSecret.name=mine")
    assert got["DELIVER_NOTIFY_WEBHOOK"]["secretKeyRef"] == {"name": "mine", "key": "webhooks", "optional": True}
    assert got["DELIVER_NOTIFY_SLACK"]["secretKeyRef"] == {"name": "mine", "key": "slack", "optional": True}
    assert secrets == {}


# ------------------------------------------------------------------ fairness between namespaces


def rolled_back(namespace: str) -> Notification:
    return Notification(
        "rolled-back", "DeliveryRolledBack", "Warning", "revision r2 rolled back", namespace, NAME, "canary",
        "RollingBack", "r2", "r1", -1, 0, time.time(),
    )  # fmt: skip


def test_one_namespaces_slow_targets_never_delay_anothers_rollback_notice(rx: Receiver) -> None:
    """Namespace a's three webhooks drip their answers (each holds a sender until its deadline);
    namespace b's rollback notice still goes out at once, with the controller's default senders."""
    for i in range(3):
        rx.drip(f"/a{i}", every=0.5, count=40)
    notifier = Notifier(egress=LOOPBACK)
    drips = tuple(Target(rx.url(f"/a{i}")) for i in range(3))
    for _ in range(3):
        notifier.submit(rolled_back("a"), drips)
    time.sleep(0.2)  # a's requests are under way

    started = time.time()
    notifier.submit(rolled_back("b"), (Target(rx.url("/b")),))
    got = rx.wait_for(lambda r: r.path == "/b", 5)

    assert got.at - started < 1.0, f"b's notice waited {got.at - started:.1f}s behind a's"
    notifier.stop()


def test_a_full_namespace_queue_drops_its_own_oldest_never_anothers(rx: Receiver) -> None:
    rx.delay("/a", 1.0)
    registry = CollectorRegistry()
    notifier = Notifier(registry=registry, per_namespace=2, sending_per_namespace=1, egress=LOOPBACK)
    a = [rolled_back("a") for _ in range(4)]
    notifier.submit(a[0], (Target(rx.url("/a")),))  # being sent
    time.sleep(0.2)
    notifier.submit(a[1], (Target(rx.url("/a")),))  # waits
    notifier.submit(rolled_back("b"), (Target(rx.url("/b")),))
    notifier.submit(a[2], (Target(rx.url("/a")),))  # a is full: a[1] goes
    notifier.submit(a[3], (Target(rx.url("/a")),))  # and then a[2]
    assert notifier.drain(10)

    assert [r.json()["id"] for r in rx.at("/a")] == [a[0].id, a[3].id], "a keeps its newest"
    assert len(rx.at("/b")) == 1, "b loses nothing"
    assert value(registry, "deliver_notifications_dropped_total") == 2
    notifier.stop()


def test_a_namespace_flooding_its_queue_gets_one_drop_log_line_not_one_per_drop(
    rx: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # e2e/hostile.py: a tenant with 10 dripping URLs and a template changed every 2 s had 810
    # notifications dropped in 70 s, each logged: the metric counts them, the log says so once a while
    rx.delay("/a", 1.0)
    registry = CollectorRegistry()
    notifier = Notifier(registry=registry, per_namespace=1, sending_per_namespace=1, egress=LOOPBACK)
    with caplog.at_level("WARNING", logger="deliver.notify"):
        notifier.submit(rolled_back("a"), (Target(rx.url("/a")),))  # being sent
        time.sleep(0.2)
        for _ in range(21):
            notifier.submit(rolled_back("a"), (Target(rx.url("/a")),))
        assert notifier.drain(10)
    assert value(registry, "deliver_notifications_dropped_total") >= 20
    lines = [r for r in caplog.records if r.getMessage() == "notification dropped: queue full"]
    assert len(lines) == 1, len(lines)
    notifier.stop()
