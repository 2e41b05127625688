"""/metrics names every managed namespace and Deployment: with ``--metrics-auth kubernetes`` (the
default off loopback) only a bearer token the API server authenticates (TokenReview) and authorizes
for ``get /metrics`` (SubjectAccessReview) reads it, as with kube-rbac-proxy (issue 24)."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from click.testing import CliRunner

from delivery import cli
from delivery.errors import KubeError
from delivery.integrations.metrics import KubeAuthorizer, Metrics, Server, auth_mode
from delivery.kube.client import SUBJECTACCESSREVIEWS, TOKENREVIEWS, Resource
from strategies.record import Phase

USERS = {"scraper-token": "system:serviceaccount:monitoring:prometheus", "tenant-token": "alice"}
ALLOWED = {"system:serviceaccount:monitoring:prometheus"}


class Reviews:
    """The API server's two reviews, as the fake of a Kube that only creates them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.down = False

    def create(self, res: Resource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((res.plural, body))
        if self.down:
            raise KubeError("connection refused")
        if res == TOKENREVIEWS:
            user = USERS.get(body["spec"]["token"])
            status = {"authenticated": True, "user": {"username": user, "groups": ["g"]}} if user else {}
            return dict(body, status=status)
        assert res == SUBJECTACCESSREVIEWS
        spec = body["spec"]
        assert spec["nonResourceAttributes"] == {"path": "/metrics", "verb": "get"}
        return dict(body, status={"allowed": spec["user"] in ALLOWED})


def get(url: str, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_need_a_token_the_api_server_authenticates_and_authorizes() -> None:
    metrics = Metrics(synced=lambda: True)
    outcome = type("O", (), {"phase": Phase.PROGRESSING.value, "step": 1, "weight": 20})()
    metrics.observe(("tenant-a", "web"), outcome, 0.1)
    reviews = Reviews()
    server = Server(metrics, "127.0.0.1", 0, auth=KubeAuthorizer(reviews)).start()  # type: ignore[arg-type]
    host, port = server.address
    base = f"http://{host}:{port}"
    try:
        code, body = get(base + "/metrics")
        assert code == 401 and "tenant-a" not in body
        assert get(base + "/metrics", "forged")[0] == 401
        code, body = get(base + "/metrics", "tenant-token")
        assert code == 403 and "tenant-a" not in body
        code, body = get(base + "/metrics", "scraper-token")
        assert code == 200 and 'namespace="tenant-a"' in body
        calls = len(reviews.calls)
        assert get(base + "/metrics", "scraper-token")[0] == 200 and len(reviews.calls) == calls  # cached
        reviews.down = True
        assert get(base + "/metrics", "another")[0] == 503  # no review, no metrics
        assert get(base + "/healthz")[0] == 200 and get(base + "/readyz")[0] == 200  # probes stay open
    finally:
        server.stop()


def test_metrics_auth_is_on_unless_the_address_is_loopback() -> None:
    assert auth_mode("auto", "") == "kubernetes" and auth_mode("auto", "0.0.0.0") == "kubernetes"
    assert auth_mode("auto", "10.0.0.7") == "kubernetes"
    assert auth_mode("auto", "127.0.0.1") == "none" and auth_mode("auto", "::1") == "none"
    assert auth_mode("none", "") == "none" and auth_mode("kubernetes", "127.0.0.1") == "kubernetes"
    result = CliRunner().invoke(cli.main, ["run", "--help"])
    assert "--metrics-auth" in result.output
