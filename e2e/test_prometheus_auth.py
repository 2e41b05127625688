"""deliver's Prometheus client against a real Prometheus that requires basic auth and TLS (and a
client certificate), configured by its own ``--web.config.file``. No Kubernetes cluster.

* a query works over TLS with the CA file, basic auth from a password file and a client cert;
* a wrong password is refused (401) with a message that names the flags to check and no secret;
* a URL with user info is refused before any request;
* a plain-HTTP client, or one without the CA, fails with a redacted message;
* the built-in templates and confined custom queries, rendered as the runner sends them, are
  accepted by the real PromQL parser and select only the Deployment's namespace;
* no secret appears in any message, verdict summary or log line of all the above.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from delivery.analysis.auth import PrometheusAuth
from delivery.analysis.checks import TEMPLATES, parse_checks
from delivery.analysis.prometheus import PrometheusClient
from delivery.analysis.providers import PrometheusProvider
from delivery.analysis.runner import Analyser, AnalysisTarget
from delivery.errors import AnalysisError, MetricsUnavailable, QueryError
from e2e import _proc
from e2e._pki import make_pki

with warnings.catch_warnings():  # bcrypt for the web config's basic_auth_users, from libxcrypt
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

PASSWORD = "e2e-Pr0m-pa55word-7f3a"
WRONG = "wrong-pa55word-9c1d"
USER = "deliver"
NS = "shop"


@dataclass
class SecuredPrometheus:
    url: str
    ca: Path
    client_cert: Path
    client_key: Path
    password_file: Path
    wrong_file: Path
    log: Path

    def auth(self, password_file: Path | None = None, cert: bool = True) -> PrometheusAuth:
        return PrometheusAuth(
            username=USER,
            password_file=password_file or self.password_file,
            ca_file=self.ca,
            cert_file=self.client_cert if cert else None,
            key_file=self.client_key if cert else None,
        )


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredPrometheus]:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).exists():
        pytest.fail("prometheus binary missing: `make install` (apt-get install -y prometheus)")
    d = tmp_path_factory.mktemp("secured-prometheus")
    pki = make_pki(d / "pki", {"deliver": "/CN=deliver"})
    web = {
        "tls_server_config": {
            "cert_file": str(pki.serving_cert),
            "key_file": str(pki.serving_key),
            "client_auth_type": "RequireAndVerifyClientCert",
            "client_ca_file": str(pki.ca_cert),
        },
        "basic_auth_users": {USER: crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))},
    }
    (d / "web.yml").write_text(yaml.safe_dump(web))
    (d / "password").write_text(PASSWORD + "\n")
    (d / "wrong").write_text(WRONG + "\n")
    port = _proc.free_port()
    client = pki.clients["deliver"]
    # Prometheus scrapes itself through the same guard, with the namespace as a target label
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "self",
                "scheme": "https",
                "basic_auth": {"username": USER, "password_file": str(d / "password")},
                "tls_config": {
                    "ca_file": str(pki.ca_cert),
                    "cert_file": str(client.cert),
                    "key_file": str(client.key),
                },
                "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": NS}}],
            }
        ],
    }
    (d / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = _proc.start(
        "prometheus-secured",
        [
            binary,
            f"--config.file={d / 'prometheus.yml'}",
            f"--web.config.file={d / 'web.yml'}",
            f"--storage.tsdb.path={d / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        d / "prometheus.log",
    )
    server = SecuredPrometheus(
        f"https://127.0.0.1:{port}",
        pki.ca_cert,
        client.cert,
        client.key,
        d / "password",
        d / "wrong",
        d / "prometheus.log",
    )
    try:
        with httpx.Client(verify=server.auth().verify()) as probe:

            def ready() -> bool:
                try:
                    return probe.get(f"{server.url}/-/ready", auth=(USER, PASSWORD), timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            _proc.wait_until(ready, 60, proc, f"secured prometheus on {server.url}")

            def scraped() -> bool:
                r = probe.get(f"{server.url}/api/v1/query", params={"query": "up == 1"}, auth=(USER, PASSWORD))
                return bool(r.json()["data"]["result"])

            _proc.wait_until(scraped, 60, proc, "prometheus scraping itself over basic auth + TLS", interval=0.5)
        yield server
    finally:
        _proc.stop(proc)


@pytest.fixture
def said(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Every message the test saw; checked for secrets at the end."""
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    yield seen
    text = "\n".join(seen) + caplog.text
    for secret in (PASSWORD, WRONG):
        assert secret not in text


def test_a_query_works_with_basic_auth_tls_and_a_client_cert(secured: SecuredPrometheus, said: list[str]) -> None:
    with PrometheusClient(secured.url, auth=secured.auth(), attempts=1) as c:
        samples = c.query('up{job="self"}')
    assert [s.value for s in samples] == [1.0]
    assert samples[0].labels["namespace"] == NS


def test_a_wrong_password_is_refused_with_a_redacted_message(secured: SecuredPrometheus, said: list[str]) -> None:
    with PrometheusClient(secured.url, auth=secured.auth(secured.wrong_file), attempts=3) as c:
        with pytest.raises(QueryError) as err:
            c.query("up")
    message = str(err.value)
    said.append(message)
    assert "401" in message and "--prometheus-password-file" in message
    assert secured.url in message  # the server is named (its URL has nothing secret)


def test_user_info_in_the_url_is_refused_before_any_request(secured: SecuredPrometheus, said: list[str]) -> None:
    url = secured.url.replace("https://", f"https://{USER}:{PASSWORD}@")
    with pytest.raises(ValueError) as err:
        PrometheusClient(url, auth=secured.auth())
    said.append(str(err.value))
    assert "--prometheus-password-file" in str(err.value) and "***@127.0.0.1" in str(err.value)


def test_without_the_ca_or_the_client_cert_the_connection_fails_redacted(
    secured: SecuredPrometheus, said: list[str]
) -> None:
    no_ca = PrometheusAuth(username=USER, password_file=secured.password_file)
    with PrometheusClient(secured.url, auth=no_ca, attempts=1) as c, pytest.raises(MetricsUnavailable) as err:
        c.query("up")
    said.append(str(err.value))
    assert "unreachable" in str(err.value) and "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    with PrometheusClient(secured.url, auth=secured.auth(cert=False), attempts=1) as c:
        with pytest.raises(AnalysisError) as err2:
            c.query("up")
    said.append(str(err2.value))


def test_rendered_and_confined_queries_are_valid_promql_bound_to_the_namespace(
    secured: SecuredPrometheus, said: list[str]
) -> None:
    target = AnalysisTarget(NS, "web", "abc123", "def456", "web-canary", "web-stable")
    customs = {
        "c1.total": 'sum by (le) (rate({__name__=~"up|scrape_.+"}[1m] offset 10s))',
        "c1.errors": 'count(label_replace(up, "namespace", "other", "job", "(.*)")) or vector(0)',
        "c2.kind": "latency",
        "c2.buckets": "sum by (le) (increase("
        'prometheus_http_request_duration_seconds_bucket{handler=~"/api/.+"}[{window}]))',
    }
    [c1, c2] = parse_checks(
        {"deliver.dev/analysis": "c1,c2", "deliver.dev/analysis-config": "cm"}, lambda _name: customs
    )
    queries = [q for t in TEMPLATES.values() for q in t.values()] + [*c1.queries.values(), *c2.queries.values()]
    with PrometheusClient(secured.url, auth=secured.auth(), attempts=1) as c:
        for template in queries:
            promql = target.query(template, "canary", "60s")
            c.query(promql)  # a QueryError here would be a query the binder broke
        # the binding selects exactly this namespace's series, whatever the query does
        [up] = c.query(target.query("up", "canary", "60s"))
        assert up.labels["namespace"] == NS
        assert c.query(AnalysisTarget("other", "web", "a", "b", "", "").query("up", "canary", "60s")) == ()
    provider = PrometheusProvider(secured.url, auth=secured.auth(), attempts=1)
    now = time.time()
    result = Analyser(provider).run([c1], target, now - 90, now)
    said.append(json.dumps(result.to_dict()))
    assert result.outcome == "inconclusive"  # whatever it measured, two equal arms are never a fail
    provider.close()
