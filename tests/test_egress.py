"""Outbound calls to tenants' URLs (delivery/integrations/egress.py): the operator's egress policy checked on the
address connected to, answers never copied, one deadline per call, capped bodies, capped URLs.

Real local HTTP servers in threads (e2e/receiver.py); they run on 127.0.0.1, which the default
policy refuses, so the tests that expect a call to go out allow loopback (``LOOPBACK``) as an operator
would with ``deliver run --egress-allow-cidr 127.0.0.0/8``.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from delivery.errors import SpecError
from delivery.integrations import egress, hooks
from delivery.integrations.egress import LOOPBACK, MAX_REQUEST_BYTES, EgressPolicy
from delivery.integrations.hooks import HookPool
from delivery.integrations.notify import Notification, Notifier, Target
from delivery.spec import parse
from e2e._pki import make_pki
from e2e.receiver import Receiver
from tests.fixture import Fixture, template

V1, V2 = "web:v1", "web:v2"


def deployment(annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(V1)},
    }


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def canary_with_pre_rollout(url: str, pool: HookPool | None = None) -> Fixture:
    f = Fixture()
    f.given_deployment("canary", V1, replicas=3, steps="20,50,100", interval="30s")
    f.given_delivered()
    f.when_annotated(hook_pre_rollout=url)
    if pool is not None:
        f.reconciler.hook_pool = pool
    return f


# ------------------------------------------------------------------ the policy


@pytest.mark.parametrize(
    ("host", "address", "allowed"),
    [
        ("metadata", "169.254.169.254", False),  # the cloud metadata address: link-local
        ("x", "fe80::1", False),
        ("x", "127.0.0.1", False),
        ("x", "::1", False),
        ("x", "::ffff:127.0.0.1", False),  # loopback behind an IPv4-mapped IPv6 address
        ("x", "0.0.0.0", False),
        ("x", "224.0.0.1", False),
        ("kubernetes.default.svc", "10.96.0.1", False),  # the service CIDR (a flag)
        ("x", "10.244.3.7", False),  # the pod CIDR (a flag)
        ("x", "192.168.1.10", False),  # private: nodes, in-cluster admin services
        ("hooks.example.com", "93.184.216.34", True),
        ("smoke.ci.svc", "10.96.4.2", True),  # allowed by name lifts the cluster and private denies
        ("smoke.ci.svc", "169.254.169.254", False),  # ... never the link-local one
        ("x", "10.200.0.5", True),  # an allowed CIDR
    ],
)
def test_the_policy_denies_special_cluster_and_private_addresses_unless_allowed(
    host: str, address: str, allowed: bool
) -> None:
    policy = EgressPolicy.parse(
        allow_hosts=("*.ci.svc",), allow_cidrs=("10.200.0.0/16",), deny_cidrs=("10.96.0.0/12", "10.244.0.0/16")
    )
    assert (policy.refusal(host, ipaddress.ip_address(address)) is None) is allowed


def test_without_public_only_allowed_destinations_are_reached() -> None:
    policy = EgressPolicy.parse(allow_hosts=("hooks.example.com",), public=False)
    assert policy.refusal("hooks.example.com", ipaddress.ip_address("93.184.216.34")) is None
    assert policy.refusal("other.example.com", ipaddress.ip_address("93.184.216.34")) is not None


def test_a_bad_policy_value_says_which() -> None:
    with pytest.raises(ValueError, match="10.0.0.0/33"):
        EgressPolicy.parse(deny_cidrs=("10.0.0.0/33",))
    with pytest.raises(ValueError, match="https://x"):
        EgressPolicy.parse(allow_hosts=("https://x",))


def test_a_hook_to_a_loopback_address_is_refused_before_any_packet_leaves(rx: Receiver) -> None:
    f = canary_with_pre_rollout(rx.url("/pre"))  # the controller's default policy
    f.when_template_changes(V2)
    f.when_settled()

    assert rx.requests == [], "nothing reached the receiver"
    [failed] = f.events("HookFailed", "Warning")
    assert "egress policy" in failed["message"] and "--egress-allow-host" in failed["message"]
    assert f.record()["phase"] == "RolledBack"


def test_a_name_that_resolves_to_loopback_is_refused_even_when_allowed_by_name(rx: Receiver) -> None:
    port = rx.httpd.server_address[1]
    policy = EgressPolicy.parse(allow_hosts=("localhost",))
    ok, detail = hooks.request(f"http://localhost:{port}/pre", {"hook": "x"}, 2.0, egress=policy)
    assert not ok and "egress policy" in detail and rx.requests == []


def test_the_address_checked_is_the_one_connected_to_resolved_once(
    rx: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that rebinds after the check (first 127.0.0.1, allowed, then 169.254.169.254) is looked
    up once: the connection goes to the checked address, with the URL's Host header."""
    port = rx.httpd.server_address[1]
    answers = iter(["127.0.0.1", "169.254.169.254", "169.254.169.254"])
    lookups: list[str] = []
    real = socket.getaddrinfo

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            lookups.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    policy = EgressPolicy.parse(allow_cidrs=("127.0.0.1/32",))
    ok, _ = hooks.request(f"http://rebind.test:{port}/pre", {"hook": "x"}, 2.0, egress=policy)
    assert ok and lookups == ["rebind.test"]
    assert rx.at("/pre")[0].headers["host"] == f"rebind.test:{port}"


def test_a_name_with_one_denied_address_among_allowed_ones_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def mixed(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in ("93.184.216.34", "169.254.169.254")]

    monkeypatch.setattr(socket, "getaddrinfo", mixed)
    ok, detail = hooks.request("http://mixed.test/pre", {"hook": "x"}, 2.0, egress=EgressPolicy())
    assert not ok and "egress policy" in detail


def test_a_redirect_is_not_followed(rx: Receiver) -> None:
    rx.answer("/pre", 302)
    ok, detail = hooks.request(rx.url("/pre"), {"hook": "x"}, 2.0, egress=LOOPBACK)
    assert (ok, detail) == (False, "HTTP 302")


# ------------------------------------------------------------------ answers are never copied


def test_a_hook_answer_body_never_reaches_events_or_records(rx: Receiver) -> None:
    rx.answer("/pre", 500)
    rx.body("/pre", b'{"token": "s3cr3t-admin-token"}')
    f = canary_with_pre_rollout(rx.url("/pre"), HookPool(workers=0, egress=LOOPBACK))
    f.when_template_changes(V2)
    f.when_settled()

    [failed] = f.events("HookFailed", "Warning")
    assert "HTTP 500" in failed["message"]
    everything = str(f.events()) + str(f.record())
    assert "s3cr3t" not in everything


def test_refused_timed_out_and_missing_look_the_same_to_a_tenant(rx: Receiver) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    rx.delay("/slow", 1.0)
    refused = hooks.request(f"http://127.0.0.1:{closed}/x", {}, 0.3, egress=LOOPBACK)
    timed_out = hooks.request(rx.url("/slow"), {}, 0.3, egress=LOOPBACK)
    assert refused == timed_out == (False, "no answer within 0.3s")


# ------------------------------------------------------------------ deadline and caps


def test_a_drip_server_cannot_hold_a_hook_past_its_deadline_and_is_no_pass(rx: Receiver) -> None:
    rx.drip("/pre", every=0.5, count=12)  # 200 at once, then 6 s of body
    started = time.monotonic()
    ok, detail = hooks.request(rx.url("/pre"), {"hook": "x"}, 1.0, egress=LOOPBACK)
    took = time.monotonic() - started
    assert not ok and detail == "no answer within 1s"
    assert took < 1.5, f"held {took:.2f}s"


def test_a_huge_answer_is_read_only_up_to_the_cap(rx: Receiver) -> None:
    rx.answer("/big", 500)
    rx.body("/big", b"y" * 2**20, repeat=150)  # 150 MiB
    ok, detail = hooks.request(rx.url("/big"), {"hook": "x"}, 10.0, egress=LOOPBACK)
    assert (ok, detail) == (False, "HTTP 500")
    time.sleep(0.2)
    assert rx.sent["/big"] < 32 * 2**20, f"{rx.sent['/big'] / 2**20:.0f} MiB went out: read whole"


def test_a_hook_timeout_above_a_minute_is_invalid() -> None:
    ann = {"deliver.dev/strategy": "canary", "deliver.dev/hook-pre-rollout": "https://h.example/x"}
    with pytest.raises(SpecError) as err:
        parse(deployment({**ann, "deliver.dev/hook-timeout": "2m"}))
    assert err.value.key == "deliver.dev/hook-timeout"
    parse(deployment({**ann, "deliver.dev/hook-timeout": "1m"}))


@pytest.mark.parametrize("key", ["deliver.dev/notify-webhook", "deliver.dev/notify-slack"])
def test_too_many_urls_in_one_annotation_are_invalid(key: str) -> None:
    urls = ",".join(f"https://h{i}.example/x" for i in range(6))
    with pytest.raises(SpecError) as err:
        parse(deployment({"deliver.dev/strategy": "canary", key: urls}))
    assert err.value.key == key and "at most 5" in err.value.problem
    parse(deployment({"deliver.dev/strategy": "canary", key: ",".join(urls.split(",")[:5])}))


def test_a_url_longer_than_2048_characters_is_invalid() -> None:
    with pytest.raises(SpecError) as err:
        parse(
            deployment(
                {"deliver.dev/strategy": "canary", "deliver.dev/hook-pre-rollout": "https://h.example/" + "a" * 2048}
            )
        )
    assert err.value.key == "deliver.dev/hook-pre-rollout"


def test_a_notification_with_a_huge_verdict_is_sent_within_the_request_cap(rx: Receiver) -> None:
    notifier = Notifier((Target(rx.url("/n")),), egress=LOOPBACK)
    verdict = {"outcome": "fail", "summary": "s", "details": {f"check-{i}": {"x": "v" * 1000} for i in range(1000)}}
    n = Notification("rolled-back", "DeliveryRolledBack", "Warning", "m", "a", "web", "canary", "RolledBack", "r2",
                     "r1", -1, 0, time.time(), verdict)  # fmt: skip
    notifier.submit(n, notifier.targets)
    assert notifier.drain(10)
    [got] = rx.at("/n")
    assert len(got.body) <= MAX_REQUEST_BYTES
    assert got.json()["verdict"]["outcome"] == "fail" and got.json()["verdict"]["truncated"] is True
    notifier.stop()


def test_tls_keeps_the_urls_host_for_sni_and_the_certificate_while_connecting_to_the_checked_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """https://kubernetes.default.svc resolved (once) to an allowed 127.0.0.1: the TLS handshake names
    the URL's host (SNI), the certificate is checked for it, and the Host header is the URL's."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not found")
    pki = make_pki(tmp_path, {})
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki.serving_cert, pki.serving_key)
    names: list[str | None] = []

    def sni(_sock: Any, name: str | None, _ctx: Any) -> None:
        names.append(name)

    server_ctx.sni_callback = sni
    client_ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    monkeypatch.setattr(egress, "_SSL", client_ctx)
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, *a, **k: (
            [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
            if host == "kubernetes.default.svc"
            else real(host, port, *a, **k)
        ),
    )
    rx = Receiver()
    rx.httpd.socket = server_ctx.wrap_socket(rx.httpd.socket, server_side=True)
    with rx:
        port = rx.httpd.server_address[1]
        policy = EgressPolicy.parse(allow_cidrs=("127.0.0.1/32",))
        ok, detail = hooks.request(f"https://kubernetes.default.svc:{port}/pre", {}, 5.0, egress=policy)
        assert (ok, detail) == (True, "HTTP 200")
        assert names == ["kubernetes.default.svc"]
        assert rx.at("/pre")[0].headers["host"] == f"kubernetes.default.svc:{port}"
        # and the default policy refuses the same name: its address is loopback
        ok, detail = hooks.request(f"https://kubernetes.default.svc:{port}/pre", {}, 5.0, egress=EgressPolicy())
        assert not ok and "egress policy" in detail and len(rx.at("/pre")) == 1


def test_the_operators_own_notification_hosts_are_allowed_for_its_urls_only() -> None:
    """--notify-webhook http://alerts.monitoring.svc/... is the operator's: its host may be in a
    private range for that target; a tenant's URL to the same host still meets the plain policy."""
    notifier = Notifier((Target("http://alerts.monitoring.svc/deliver"),), egress=EgressPolicy())
    private = ipaddress.ip_address("10.96.7.7")
    assert notifier._operator_egress.refusal("alerts.monitoring.svc", private) is None
    assert notifier.egress.refusal("alerts.monitoring.svc", private) is not None
    metadata = ipaddress.ip_address("169.254.169.254")
    assert notifier._operator_egress.refusal("alerts.monitoring.svc", metadata) is not None
    notifier.stop()
