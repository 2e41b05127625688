"""Prometheus credentials without secrets in URLs (issue 24): files for the token and the password
(re-read when they change), extra headers, TLS files; a URL with user info is refused naming the
flag to use; and no secret reaches a verdict summary, an Event or a log line, whatever echoes it."""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from click.testing import CliRunner

from delivery import cli
from delivery.analysis.auth import PrometheusAuth, redact_url
from delivery.analysis.prometheus import PrometheusClient
from delivery.engine.reconcile import Reconciler
from delivery.engine.verdicts import make_analyser
from delivery.errors import MetricsUnavailable, QueryError
from tests.fixture import Fixture
from tests.promserver import FakePrometheus, whole

TOKEN = "s3cr3t-t0ken-value"
PASSWORD = "hunter2-pa55word"
EMPTY = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()


@pytest.fixture
def server() -> Iterator[FakePrometheus]:
    fake = FakePrometheus(whole(EMPTY))
    yield fake
    fake.close()


def secret_file(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / name
    path.write_text(value + "\n")
    return path


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@prom:9090/", "https://***@prom:9090/"),
        ("http://prom:9090/x?token=abc&b=1", "http://prom:9090/x?token=***&b=***"),
        ("http://[::1]:9090", "http://[::1]:9090"),
        ("http://prom.monitoring.svc:9090#frag", "http://prom.monitoring.svc:9090"),
        ("not a url with pw", "***"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_userinfo_in_the_url_is_refused_naming_the_flags_to_use() -> None:
    with pytest.raises(ValueError, match="--prometheus-password-file") as err:
        PrometheusClient("https://deliver:" + PASSWORD + "@prom:9090")
    assert PASSWORD not in str(err.value) and "--prometheus-bearer-token-file" in str(err.value)


def test_run_refuses_userinfo_with_2_and_no_secret(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["run", "--prometheus-url", f"http://deliver:{PASSWORD}@prom:9090"])
    assert result.exit_code == 2, result.output
    assert "--prometheus-password-file" in result.output and PASSWORD not in result.output


def test_run_refuses_half_of_basic_auth(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli.main, ["run", "--prometheus-url", "http://prom:9090", "--prometheus-username", "deliver"]
    )
    assert result.exit_code == 2 and "--prometheus-password-file" in result.output


def test_bearer_token_file_is_sent_and_reread_when_it_changes(server: FakePrometheus, tmp_path: Path) -> None:
    token = secret_file(tmp_path, "token", "first-token")
    c = PrometheusClient(server.url, attempts=1, auth=PrometheusAuth(bearer_token_file=token))
    c.query("x")
    # a projected token is replaced by a rename (a new inode), as the kubelet does
    rotated = secret_file(tmp_path, "token.new", "second-token")
    os.replace(rotated, token)
    c.query("x")
    assert [r["headers"]["Authorization"] for r in server.requests] == ["Bearer first-token", "Bearer second-token"]


def test_basic_auth_from_a_password_file_and_extra_headers(server: FakePrometheus, tmp_path: Path) -> None:
    auth = PrometheusAuth(
        username="deliver", password_file=secret_file(tmp_path, "pw", PASSWORD), headers={"X-Scope-OrgID": "team-a"}
    )
    PrometheusClient(server.url, attempts=1, auth=auth).query("x")
    [req] = server.requests
    assert req["headers"]["Authorization"] == "Basic " + base64.b64encode(f"deliver:{PASSWORD}".encode()).decode()
    assert req["headers"]["X-Scope-OrgID"] == "team-a"


def test_a_missing_token_file_is_metrics_unavailable_naming_the_file(server: FakePrometheus, tmp_path: Path) -> None:
    c = PrometheusClient(server.url, attempts=1, auth=PrometheusAuth(bearer_token_file=tmp_path / "gone"))
    with pytest.raises(MetricsUnavailable, match="bearer token file .*gone"):
        c.query("x")


def test_bad_auth_combinations_are_refused(tmp_path: Path) -> None:
    pw = secret_file(tmp_path, "pw", PASSWORD)
    for kwargs in (
        {"username": "u"},
        {"password_file": pw},
        {"bearer_token_file": pw, "username": "u", "password_file": pw},
        {"cert_file": pw},
        {"headers": {"Bad Name": "x"}},
        {"headers": {"X-A": "a\r\nInjected: 1"}},
    ):
        with pytest.raises(ValueError):
            PrometheusAuth(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="TLS"):
        PrometheusAuth(ca_file=tmp_path / "missing-ca.pem").verify()


def echo_secrets(status: int) -> object:
    """A hostile or broken proxy: its error text repeats the request's credentials."""

    def answer(handler: BaseHTTPRequestHandler) -> tuple[int, Iterator[bytes]]:
        said = f"{handler.headers.get('Authorization')} {handler.headers.get('X-Api-Key')}"
        body = json.dumps({"status": "error", "errorType": "internal", "error": f"upstream said {said}"})
        return status, iter([body.encode()])

    return answer


@pytest.mark.parametrize("status", [401, 503, 400])
def test_no_secret_reaches_a_verdict_an_event_or_a_log_line(
    server: FakePrometheus, tmp_path: Path, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    server.answer = echo_secrets(status)  # type: ignore[assignment]
    auth = PrometheusAuth(
        username="deliver", password_file=secret_file(tmp_path, "pw", PASSWORD), headers={"X-Api-Key": TOKEN}
    )
    f = Fixture()
    analyser = make_analyser(f.kube, server.url, clock=lambda: f.now, auth=auth, attempts=1)
    f.reconciler = Reconciler(f.kube, analyser=analyser, clock=lambda: f.now)
    caplog.set_level(logging.DEBUG)
    f.given_deployment(strategy="canary", steps="20,100", interval="1m", analysis="error-rate")
    f.given_delivered()
    f.when_template_changes("web:v2")
    f.when_settled(passes=40)

    assert server.requests, "Prometheus was asked"
    record = f.record()
    assert record["verdicts"], record
    said = json.dumps(record) + repr(f.kube.objects) + caplog.text
    said += " ".join(e.get("message", "") for e in f.events())
    assert "upstream said" in said or "unauthorized" in said  # the errors did come through...
    encoded = base64.b64encode(f"deliver:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, TOKEN, encoded):
        assert secret not in said  # ...without the secrets


def test_a_wrong_password_is_refused_with_the_flags_to_check(server: FakePrometheus, tmp_path: Path) -> None:
    server.answer = echo_secrets(401)  # type: ignore[assignment]
    auth = PrometheusAuth(username="deliver", password_file=secret_file(tmp_path, "pw", PASSWORD))
    with pytest.raises(QueryError, match="401.*--prometheus-password-file") as err:
        PrometheusClient(server.url, attempts=3, auth=auth).query("x")
    assert PASSWORD not in str(err.value)
    assert len(server.requests) == 1  # a wrong password is not retried
