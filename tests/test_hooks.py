"""Hooks (strategies/hooks.py decides, delivery/integrations/hooks.py calls) against real local HTTP servers.

Deliveries run on the one fake API (tests/fixture.py, fake time); every hook is a real HTTP request
to a real server in a thread (e2e/receiver.py). The default hook pool of the Reconciler calls inline,
so a pass that asks for a call has its answer in the next pass; one test uses a real pool thread and
a slow hook to show a step is not left before its load-test call answered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from delivery import templates
from delivery.integrations import hooks
from delivery.integrations.egress import LOOPBACK
from delivery.integrations.hooks import HookPool
from delivery.kube.client import DEPLOYMENTS, PODS, SERVICES
from delivery.spec import problems
from e2e.receiver import Receiver, Request, namespace_key, verified
from strategies.actions import CallHook
from strategies.observation import HookResult
from strategies.spec import HookKind
from tests.fixture import NAME, NS, Fixture, template

V1, V2 = "web:v1", "web:v2"
REV1, REV2 = templates.revision(template(V1)), templates.revision(template(V2))


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def canary(rx: Receiver, **hooks: str) -> Fixture:
    """A canary Deployment at rest on v1 with these hooks (kind -> path on the receiver)."""
    f = Fixture()
    f.reconciler.hook_pool = HookPool(workers=0, egress=LOOPBACK)  # the receivers run on 127.0.0.1
    f.given_deployment("canary", V1, replicas=3, steps="20,50,100", interval="30s")
    f.given_delivered()
    f.when_annotated(**{f"hook_{k}": rx.url(path) for k, path in hooks.items()})
    return f


def bluegreen(rx: Receiver, **hooks: str) -> Fixture:
    """A blue-green Deployment at rest on v1 (the user's Service NAME is its active Service)."""
    f = Fixture()
    f.reconciler.hook_pool = HookPool(workers=0, egress=LOOPBACK)  # the receivers run on 127.0.0.1
    f.given_service(NAME)
    f.given_deployment("blue-green", V1, replicas=2, interval="30s", keep_warm="30s")
    f.given_delivered()
    f.when_annotated(**{f"hook_{k}": rx.url(path) for k, path in hooks.items()})
    return f


def active_selects(f: Fixture) -> set[str]:
    """The images of the pods the active Service (the user's) selects: what takes the traffic."""
    selector = f.kube.obj(SERVICES, NAME)["spec"]["selector"]
    return {p["spec"]["containers"][0]["image"] for p in f.kube.find(PODS, NS, {"matchLabels": selector})}


def poll(f: Fixture, times: int, seconds: float = 6) -> None:
    for _ in range(times):
        f.when_reconciled()
        f.cluster()
        f.when_time_passes(seconds)


# ------------------------------------------------------------------ pre-rollout


def test_pre_rollout_is_called_before_anything_is_rolled_out_and_a_2xx_starts_the_delivery(rx: Receiver) -> None:
    f = canary(rx, pre_rollout="/pre")
    seen: list[int] = []

    def answer(r: Request) -> int:
        seen.append(len(f.delivers_replicasets()))
        return 200

    rx.answer("/pre", answer)
    f.when_template_changes(V2)

    f.when_settled()

    assert f.record()["phase"] == "Succeeded" and f.image() == V2
    [call] = rx.at("/pre")
    assert seen == [0], "no new pod before the hook answered"
    body = call.json()
    assert (body["hook"], body["namespace"], body["deployment"], body["revision"]) == ("pre-rollout", NS, NAME, REV2)
    assert (body["stableRevision"], body["step"], body["phase"]) == (REV1, 1, "Progressing")
    [passed] = f.events("HookPassed")
    assert "pre-rollout" in passed["message"] and "HTTP 200" in passed["message"]
    assert f.reasons().index("HookPassed") < f.reasons().index("StepPassed")


def test_a_delivery_calls_its_pre_rollout_hook_once_whatever_the_clocks_digits(rx: Receiver) -> None:
    """The record keeps times to the millisecond: a call is known by the delivery's start as kept
    there, not by the clock's full digits (else the next pass, reading the record, calls again)."""
    f = canary(rx, pre_rollout="/pre")
    f.when_time_passes(0.123456)
    f.when_template_changes(V2)

    f.when_settled()

    assert f.record()["phase"] == "Succeeded"
    assert len(rx.at("/pre")) == 1
    assert len(f.events("HookPassed")) == 1


@pytest.mark.parametrize("failure", ["status", "timeout", "unreachable"])
def test_a_pre_rollout_hook_that_fails_times_out_or_is_unreachable_means_no_rollout(rx: Receiver, failure: str) -> None:
    f = canary(rx, pre_rollout="/pre")
    f.when_annotated(hook_timeout="300ms")
    if failure == "status":
        rx.answer("/pre", 503)
    elif failure == "timeout":
        rx.delay("/pre", 1.0)
    else:
        f.when_annotated(hook_pre_rollout="http://127.0.0.1:9/pre")  # the discard port: nobody listens
    f.when_template_changes(V2)

    f.when_settled()

    record = f.record()
    assert (record["phase"], record["failedRevision"]) == ("RolledBack", REV2)
    assert f.image() == V1, "the stable template is back"
    assert f.writes_to("replicasets", "create") == [], "nothing was rolled out"
    assert f.serving() == {V1: 3}
    [failed] = f.events("HookFailed", "Warning")
    # a timeout and a closed port look the same to a tenant (no port-scan oracle)
    expected = {"status": "HTTP 503", "timeout": "no answer within 0.3s", "unreachable": "no answer within 0.3s"}[
        failure
    ]
    assert "pre-rollout hook" in failed["message"] and expected in failed["message"]
    assert "not rolled out" in failed["message"]
    [rolled_back] = f.events("DeliveryRolledBack")
    assert "pre-rollout hook failed" in rolled_back["message"]
    if failure != "unreachable":
        rx.wait_for(lambda _r: len(rx.at("/pre")) == 3, 5)  # a timed-out request is seen once its answer is due


@pytest.mark.parametrize(
    ("strategy", "annotations"),
    [
        ("rolling", {"pause_at": "50", "interval": "30s"}),
        ("blue-green", {"interval": "30s", "keep_warm": "30s"}),
        ("recreate", {"interval": "30s"}),
    ],
)
@pytest.mark.parametrize("answer", [200, 500])
def test_pre_and_post_rollout_hooks_work_for_every_strategy(
    rx: Receiver, strategy: str, annotations: dict[str, str], answer: int
) -> None:
    rx.answer("/pre", answer)
    f = Fixture()
    f.reconciler.hook_pool = HookPool(workers=0, egress=LOOPBACK)  # the receivers run on 127.0.0.1
    f.given_deployment(strategy, V1, replicas=3, **annotations)
    if strategy == "recreate":
        d = f.deployment()
        d["spec"]["strategy"] = {"type": "Recreate"}
        f.kube.put(DEPLOYMENTS, d)
    f.given_delivered()
    f.when_annotated(hook_pre_rollout=rx.url("/pre"), hook_post_rollout=rx.url("/post"))
    f.when_template_changes(V2)

    f.when_settled()

    record = f.record()
    if answer == 200:
        assert record["phase"] == "Succeeded" and f.image() == V2
    else:
        assert (record["phase"], record["failedRevision"]) == ("RolledBack", REV2)
        assert f.image() == V1 and f.serving() == {V1: 3}, "nothing of v2 ever ran"
        assert f.writes_to("replicasets", "create") == []
    assert len(rx.at("/pre")) == (1 if answer == 200 else 3)
    [post] = rx.at("/post")
    assert post.json()["phase"] == record["phase"]


def test_a_signed_hook_call_verifies_with_the_secret(rx: Receiver) -> None:
    f = canary(rx, pre_rollout="/pre")
    f.reconciler.hook_pool = HookPool(workers=0, secret=b"k3y", egress=LOOPBACK)
    f.when_template_changes(V2)
    f.when_reconciled()

    [call] = rx.at("/pre")
    assert call.headers["x-deliver-namespace"] == NS and call.headers["x-deliver-signature"].startswith("v2=")
    assert verified(namespace_key(b"k3y", NS), call.headers, call.body)
    assert not verified(b"k3y", call.headers, call.body), "the operator's secret itself signs nothing"
    assert not verified(namespace_key(b"k3y", "other"), call.headers, call.body)


# ------------------------------------------------------------------ confirm-promotion


def test_confirm_promotion_holds_the_promotion_and_is_polled_until_it_answers_2xx(rx: Receiver) -> None:
    f = canary(rx, confirm_promotion="/confirm")
    approved = {"yes": False}
    rx.answer("/confirm", lambda r: 200 if approved["yes"] else 403)
    f.when_template_changes(V2)

    f.when_settled(until=lambda f: len(rx.at("/confirm")) >= 3)
    for _ in range(5):  # a few more polls: still held
        f.when_reconciled()
        f.cluster()
        f.when_time_passes(6)

    record = f.record()
    assert (record["phase"], record["step"]) == ("Progressing", 1), "held at its last step (50%), not promoted"
    assert "confirm-promotion" in record["message"]
    # exact shares (the default): the canary keeps its pods (50% of 3: 1); while promotion waits for
    # the hook, the stable ReplicaSet is handed back to the Deployment, so stable capacity is whole
    assert f.serving() == {V1: 3, V2: 1}, "the canary keeps its last share, stable capacity whole"
    assert len(f.events("AwaitingConfirmation")) == 1, "said once"
    assert record["hold"] == "AwaitingConfirmation", "what the Argo CD health reads (Suspended)"
    assert "Promoting" not in f.reasons()
    calls = rx.at("/confirm")
    assert len(calls) >= 5 and all(c.status == 403 for c in calls)
    assert calls[0].json()["hook"] == "confirm-promotion"

    approved["yes"] = True
    f.when_settled()

    assert f.record()["phase"] == "Succeeded" and f.serving() == {V2: 3}
    assert "confirm-promotion" in f.events("HookPassed")[-1]["message"]


def test_an_operator_promote_passes_a_confirm_promotion_hook_that_never_answers(rx: Receiver) -> None:
    from delivery.engine.state import send_request

    f = canary(rx, confirm_promotion="/confirm")
    rx.answer("/confirm", 500)
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: len(rx.at("/confirm")) >= 2)
    assert f.record()["phase"] == "Progressing"

    send_request(f.kube, f.deployment(), "promote")
    f.when_settled()

    assert f.record()["phase"] == "Succeeded"


def test_a_blue_green_switch_waits_for_confirm_promotion_with_the_active_service_on_stable(rx: Receiver) -> None:
    f = bluegreen(rx, confirm_promotion="/confirm")
    approved = {"yes": False}
    rx.answer("/confirm", lambda r: 200 if approved["yes"] else 403)
    f.when_template_changes(V2)

    f.when_settled(until=lambda f: len(rx.at("/confirm")) >= 2)
    poll(f, 5)  # 30 s more: still held

    record = f.record()
    assert (record["phase"], record["step"], record["hold"]) == ("Progressing", 0, "AwaitingConfirmation")
    assert not record.get("switched"), "not switched"
    assert "switch of the active Service waits for the confirm-promotion hook" in record["message"]
    assert active_selects(f) == {V1}, "the active Service keeps selecting the stable pods"
    assert f.serving() == {V1: 2, V2: 2}, "the preview stays up at full size"
    assert "ActiveSwitched" not in f.reasons()
    assert len(f.events("AwaitingConfirmation")) == 1, "said once"
    calls = rx.at("/confirm")
    assert len(calls) >= 5 and all(c.status == 403 for c in calls), "polled"
    body = calls[0].json()
    assert (body["hook"], body["strategy"], body["revision"]) == ("confirm-promotion", "blue-green", REV2)

    approved["yes"] = True
    f.when_settled(until=lambda f: f.record().get("switched", 0) > 0)
    assert active_selects(f) == {V2}, "switched once the hook answered 2xx"
    assert "switching the active Service" in f.events("HookPassed")[-1]["message"]
    assert f.reasons().index("HookPassed") < f.reasons().index("ActiveSwitched")
    f.when_settled()
    assert f.record()["phase"] == "Succeeded" and f.record()["hold"] == ""


@pytest.mark.parametrize("failure", ["status", "timeout", "unreachable"])
def test_a_blue_green_confirm_promotion_that_fails_never_switches_and_promote_overrides_it(
    rx: Receiver, failure: str
) -> None:
    from delivery.engine.state import send_request

    f = bluegreen(rx, confirm_promotion="/confirm")
    f.when_annotated(hook_timeout="200ms")
    if failure == "status":
        rx.answer("/confirm", 500)
    elif failure == "timeout":
        rx.delay("/confirm", 0.5)
    else:
        f.when_annotated(hook_confirm_promotion="http://127.0.0.1:9/confirm")
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.record().get("hold") == "AwaitingConfirmation")
    poll(f, 4)

    assert f.record()["phase"] == "Progressing" and not f.record().get("switched")
    assert active_selects(f) == {V1}, "a hook that errors or times out is never a pass"

    send_request(f.kube, f.deployment(), "promote")
    f.when_settled(until=lambda f: f.record().get("switched", 0) > 0)
    assert active_selects(f) == {V2}, "`deliver promote` switches without the hook"
    assert f.record()["hold"] == "", "the hold went with the promotion"
    f.when_settled()
    assert f.record()["phase"] == "Succeeded" and f.serving() == {V2: 2}


def test_deliver_abort_rolls_back_a_blue_green_awaiting_confirmation(rx: Receiver) -> None:
    from delivery.engine.state import send_request

    f = bluegreen(rx, confirm_promotion="/confirm")
    rx.answer("/confirm", 403)
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.record().get("hold") == "AwaitingConfirmation")

    send_request(f.kube, f.deployment(), "abort")
    f.when_settled()

    assert (f.record()["phase"], f.record()["hold"]) == ("Aborted", "")
    assert f.image() == V1 and f.serving() == {V1: 2} and active_selects(f) == {V1}


def test_a_crash_looping_preview_awaiting_confirmation_is_rolled_back(rx: Receiver) -> None:
    f = bluegreen(rx, confirm_promotion="/confirm")
    rx.answer("/confirm", 403)
    f.when_template_changes(V2)
    f.when_settled(until=lambda f: f.record().get("hold") == "AwaitingConfirmation")

    f.crashing.add(V2)
    for pod in f.kube.find(PODS, NS, {"matchLabels": {"app": NAME}}):
        if pod["spec"]["containers"][0]["image"] == V2:
            f.kube.delete(PODS, NS, pod["metadata"]["name"])  # its pods restart, crash-looping
    f.when_settled()

    assert f.record()["phase"] == "RolledBack" and "unhealthy" in f.record()["message"]
    assert active_selects(f) == {V1}


# ------------------------------------------------------------------ load-test


def test_load_test_is_called_when_each_step_starts_serving_its_share(rx: Receiver) -> None:
    f = canary(rx, load_test="/load")
    f.when_template_changes(V2)

    f.when_settled()

    assert f.record()["phase"] == "Succeeded"
    bodies = [r.json() for r in rx.at("/load")]
    assert [(b["hook"], b["step"], b["weight"]) for b in bodies] == [("load-test", 1, 20), ("load-test", 2, 50)]


def test_a_failing_load_test_is_no_evidence_and_the_step_never_passes(rx: Receiver) -> None:
    f = canary(rx, load_test="/load")
    rx.answer("/load", 500)
    f.when_template_changes(V2)

    f.when_settled()

    record = f.record()
    assert (record["phase"], record["hold"], record["step"]) == ("Paused", "Inconclusive", 0)
    assert "load-test hook failed: HTTP 500" in record["message"]
    assert "StepPassed" not in f.reasons()
    [failed] = f.events("HookFailed", "Warning")
    assert "step 1" in failed["message"]


def test_a_step_is_not_left_before_its_load_test_call_answered(rx: Receiver) -> None:
    f = canary(rx, load_test="/load")
    pool = HookPool(workers=1, egress=LOOPBACK)
    f.reconciler.hook_pool = pool
    rx.delay("/load", 1.5)
    f.when_template_changes(V2)

    for _ in range(40):  # 40+ s of fake time: the step's interval (30s) is long over
        f.when_reconciled()
        f.cluster()
        f.when_time_passes(1.5)
    record = f.record()
    assert (record["phase"], record["step"]) == ("Progressing", 0)
    assert "waiting for the load-test hook" in record["message"]

    deadline = time.monotonic() + 10
    while not rx.at("/load") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    rx.delay("/load", 0.0)  # the next step's call answers at once (it still runs on the pool's thread)
    f.when_settled(until=lambda f: f.record()["phase"] == "Succeeded" or bool(time.sleep(0.01)))
    assert f.record()["phase"] == "Succeeded"
    pool.shutdown()


def test_a_blue_green_switch_waits_for_the_load_test_call_of_its_preview(rx: Receiver) -> None:
    f = bluegreen(rx, load_test="/load")
    pool = HookPool(workers=1, egress=LOOPBACK)
    f.reconciler.hook_pool = pool
    rx.delay("/load", 2.0)  # slow: the preview's checks pass long before it answers
    f.when_template_changes(V2)

    for _ in range(30):  # 45 s of fake time: the preview's interval (30s) is long over
        f.when_reconciled()
        f.cluster()
        f.when_time_passes(1.5)
    record = f.record()
    assert (record["phase"], record["step"]) == ("Progressing", 0), "not switched before the call answered"
    assert "waiting for the load-test hook" in record["message"]
    assert active_selects(f) == {V1} and f.serving() == {V1: 2, V2: 2}, "the preview is held, not switched"

    f.when_settled(until=lambda f: f.record()["phase"] == "Succeeded" or bool(time.sleep(0.01)))
    pool.shutdown()
    assert f.record()["phase"] == "Succeeded"
    [call] = rx.at("/load")
    body = call.json()
    assert (body["hook"], body["strategy"], body["step"], body["weight"]) == ("load-test", "blue-green", 1, 0)
    assert f.reasons().index("StepPassed") < f.reasons().index("ActiveSwitched")


def test_a_failing_blue_green_load_test_is_no_evidence_and_the_preview_never_passes(rx: Receiver) -> None:
    f = bluegreen(rx, load_test="/load")
    preview_at_call: list[int] = []
    rx.answer("/load", lambda r: (preview_at_call.append(f.serving().get(V2, 0)), 500)[1])
    f.when_template_changes(V2)

    f.when_settled()

    record = f.record()
    assert (record["phase"], record["hold"], record["step"]) == ("Paused", "Inconclusive", 0)
    assert "load-test hook failed: HTTP 500" in record["message"]
    assert "StepPassed" not in f.reasons() and "ActiveSwitched" not in f.reasons()
    assert active_selects(f) == {V1}
    assert preview_at_call == [2], "called once, when the preview ran at full size"


# ------------------------------------------------------------------ post-rollout


def test_post_rollout_is_called_once_after_a_promotion(rx: Receiver) -> None:
    f = canary(rx, post_rollout="/post")
    f.when_template_changes(V2)

    f.when_settled()
    for _ in range(3):
        f.when_reconciled()

    [call] = rx.at("/post")
    assert (call.json()["hook"], call.json()["phase"], call.json()["revision"]) == ("post-rollout", "Succeeded", REV2)
    [passed] = f.events("HookPassed")
    assert "Succeeded" in passed["message"]


def test_a_failing_post_rollout_after_a_rollback_is_a_warning_and_changes_nothing(rx: Receiver) -> None:
    f = canary(rx, post_rollout="/post")
    rx.answer("/post", 500)
    f.crashing.add(V2)
    f.when_template_changes(V2)

    f.when_settled()

    assert f.record()["phase"] == "RolledBack" and f.image() == V1
    assert [r.json()["phase"] for r in rx.at("/post")] == ["RolledBack"] * 3, "3 attempts, one call"
    [failed] = f.events("HookFailed", "Warning")
    assert "post-rollout" in failed["message"] and "HTTP 500" in failed["message"]


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "strategy,key,value,needle",
    [
        ("canary", "hook-pre-rollout", "not a url", "not a URL"),
        ("canary", "hook-load-test", "file:///etc/passwd", "not an http"),
        ("canary", "hook-post-rollout", "https://u:p@example.com/x", "credentials"),
        ("rolling", "hook-confirm-promotion", "https://example.com/ok", "only applies to canary"),
        ("recreate", "hook-load-test", "https://example.com/ok", "only applies to canary and blue-green"),
        ("canary", "hook-timeout", "forever", "not a duration"),
    ],
)
def test_bad_hook_annotations_are_invalid(strategy: str, key: str, value: str, needle: str) -> None:
    d = {
        "metadata": {"name": "web", "annotations": {"deliver.dev/strategy": strategy, f"deliver.dev/{key}": value}},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {}},
    }
    found = problems(d)
    assert [e.key for e in found] == [f"deliver.dev/{key}"] and needle in str(found[0])


def test_blue_green_takes_both_gating_hooks_but_not_confirm_promotion_without_auto_promote() -> None:
    def found(**annotations: str) -> list[str]:
        keys = {"deliver.dev/strategy": "blue-green", **{f"deliver.dev/{k}": v for k, v in annotations.items()}}
        d = {"metadata": {"name": "web", "annotations": keys}, "spec": {"selector": {"matchLabels": {"app": "web"}}}}
        return [str(e) for e in problems(d)]

    url = "https://example.com/ok"
    assert found(**{"hook-confirm-promotion": url, "hook-load-test": url}) == []
    [problem] = found(**{"hook-confirm-promotion": url, "auto-promote": "false"})
    assert "deliver.dev/hook-confirm-promotion" in problem and "deliver promote" in problem


def test_a_bad_hook_url_takes_no_action_and_warns(rx: Receiver) -> None:
    f = canary(rx)
    f.when_annotated(hook_pre_rollout="ftp://example.com/pre")
    f.when_template_changes(V2)
    before = f.deployment()

    f.when_reconciled()

    assert f.deployment() == before and f.delivers_replicasets() == []
    [warning] = f.events("InvalidAnnotation", "Warning")
    assert "deliver.dev/hook-pre-rollout" in warning["message"]


def test_deliver_lint_reports_bad_hook_and_notification_urls(tmp_path: Path) -> None:
    from tests.test_cli import invoke, manifest

    path = tmp_path / "m.yaml"
    path.write_text(
        manifest(
            {
                "deliver.dev/strategy": "canary",
                "deliver.dev/hook-pre-rollout": "smoke-tests:8080",
                "deliver.dev/notify-slack": "https://hooks.example.com/x,gopher://old",
            }
        )
    )
    result = invoke("lint", str(path), "-o", "json")
    assert result.exit_code == 1
    [bad] = json.loads(result.stdout)["results"]
    assert sorted(p["key"] for p in bad["problems"]) == ["deliver.dev/hook-pre-rollout", "deliver.dev/notify-slack"]


# ------------------------------------------------------------------ fairness between namespaces


def test_one_namespaces_slow_hooks_never_hold_anothers(rx: Receiver) -> None:
    """Namespace a starts more slow hook calls than the pool has threads; b's call is made at once."""
    rx.delay("/slow", 2.0)
    pool = HookPool(workers=4, egress=LOOPBACK)
    action = CallHook(HookKind.LOAD_TEST, REV2, 1.0)

    def call(path: str) -> Callable[[], HookResult]:
        return lambda: hooks.run_call(action, rx.url(path), {"namespace": "x"}, 5.0, None, time.time, LOOPBACK)

    for i in range(6):
        pool.call(("a", f"web{i}"), "uid", action, call("/slow"))
    started = time.monotonic()
    pool.call(("b", "web"), "uid", action, call("/fast"))
    while not pool.results(("b", "web"), "uid") and time.monotonic() - started < 10:
        time.sleep(0.02)

    took = time.monotonic() - started
    assert took < 1.0, f"b's hook waited {took:.1f}s for a's"
    assert len(rx.at("/slow")) <= 2, "a holds at most its per-namespace share of the pool"
    pool.shutdown()
