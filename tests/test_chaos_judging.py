"""The chaos runner's judging (e2e/chaos.py) without a cluster: a trial whose fault did not happen
cannot pass (issue 24), and the probes that prove a Prometheus fault see what a client would."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from e2e.chaos import Figures, Restart, SwitchableProxy, Trial, judge_prometheus_fault, probe


def ok(**kw: object) -> Trial:
    return Trial("apiserver", "canary", faults=1, phase="Succeeded", **kw)  # type: ignore[arg-type]


def test_a_trial_whose_fault_could_not_be_injected_is_a_violation() -> None:
    assert Figures([ok()]).violations() == []
    failed = ok(fault_error="RuntimeError: kube-apiserver did not stop")
    assert Figures([failed]).violations() == [failed] and "not injected" in failed.unproven


def test_a_trial_whose_fault_is_not_shown_to_have_happened_is_a_violation() -> None:
    assert ok(injected=False).wrong and ok(injected=True, observed=False).wrong
    assert not ok(injected=True, observed=True).wrong and not ok(injected=True).wrong
    table = Figures([ok(injected=False)]).table()
    assert "fault unproven" in table and table.splitlines()[-1].split(" | ")[9] == "1"


def test_an_apiserver_restart_is_proven_by_a_failed_request_and_a_new_pid() -> None:
    assert Restart(13.0, 100, 200, refused=True, ready_after=True).proven
    assert not Restart(13.0, 100, 100, refused=True, ready_after=True).proven  # never restarted
    assert not Restart(0.1, 100, 200, refused=False, ready_after=True).proven  # never seen down
    assert not Restart(13.0, 100, 200, refused=True, ready_after=False).proven


@pytest.fixture
def upstream() -> Iterator[int]:
    """A tiny HTTP server that answers every request."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    yield port
    server.close()


def test_the_probe_sees_a_hang_as_a_timeout_and_a_stop_as_refused(upstream: int) -> None:
    proxy = SwitchableProxy(upstream)
    try:
        assert probe(proxy.url, timeout=2.0) == "answered"
        proxy.set("hang")
        before = proxy.swallowed
        assert probe(proxy.url, timeout=0.5) == "timeout"
        assert proxy.swallowed == before + 1
        proxy.set("down")
        assert probe(proxy.url, timeout=0.5) == "refused"
        proxy.set("forward")
        assert probe(proxy.url, timeout=2.0) == "answered"
    finally:
        proxy.close()


def test_a_prometheus_fault_deliver_never_met_or_that_still_answered_fails_the_trial() -> None:
    hung = Trial("prometheus-hang", "canary", faults=1, phase="Succeeded")
    judge_prometheus_fault(hung, "hang", "timeout", met=2)
    assert not hung.wrong
    unmet = Trial("prometheus-hang", "canary", faults=1, phase="Succeeded")
    judge_prometheus_fault(unmet, "hang", "timeout", met=0)
    assert unmet.unproven == "fault not met by deliver"
    answered = Trial("prometheus-hang", "canary", faults=1, phase="Succeeded")
    judge_prometheus_fault(answered, "hang", "answered", met=3)
    assert answered.unproven == "fault not shown to have happened"
    stopped = Trial("prometheus-stop", "canary", faults=1, phase="Paused", expected="Paused")
    judge_prometheus_fault(stopped, "down", "refused", met=0)
    assert not stopped.wrong


def test_an_operator_request_that_races_the_controller_is_sent_again() -> None:
    """CI 2026-12-07: the controller wrote the Deployment between the runner's read and its
    request, the API answered 409, and a correct delivery counted as a failed trial. The runner
    re-reads and writes again, as `deliver resume` does."""
    from delivery.engine.state import read_request
    from delivery.errors import Conflict
    from delivery.kube.client import DEPLOYMENTS
    from e2e.chaos import send_fresh
    from tests.fixture import Fixture

    f = Fixture()
    f.given_deployment()
    f.kube.fail_next(Conflict("the object has been modified", status=409), verb="patch", resource=DEPLOYMENTS)
    rid = send_fresh(f.kube, f.ns, "resume")  # type: ignore[arg-type]
    assert read_request(f.deployment()) == ("resume", rid)
