"""``deliver dashboard`` in a real browser (Debian's Chromium, e2e/browser.py) on the local control plane.

The page lists a canary in progress and follows the controller's step and weight changes within
2 s; its promote button moves a manual gate; a user without rights sees why, and no button works.
Skipped, with the reason in the skip message and a warning, only where no browser can be installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kubernetes import client

from delivery.kube.client import KubeClient as JsonKube
from e2e.browser import Browser, browser_missing, chromium
from e2e.cluster import REPO_ROOT
from e2e.conftest import RunningCluster
from e2e.controller import ControllerProcess
from e2e.helpers import Kube, canary, service_account_kubeconfig, set_image, state, wait_for, wait_phase, wait_stable
from e2e.services import Prometheus
from e2e.test_analysis import BAD_ERRORS, apps, deliver_v2  # noqa: F401 (apps: the fixture of its app processes)
from e2e.versioned_app import VersionedApp

MISSING = browser_missing()
if MISSING:
    warnings.warn(f"NO BROWSER: the dashboard's browser tests are skipped: {MISSING}", stacklevel=1)
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"NO BROWSER, dashboard untested in a browser: {MISSING}")

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "img"


@contextmanager
def dashboard(kubeconfig: Path | str, namespace: str, log: Path, *extra: str) -> Iterator[str]:
    """``deliver dashboard`` as a user runs it, on a free port; yields its URL."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "delivery.cli", "--kubeconfig", str(kubeconfig), "dashboard", "-n", namespace]
            + ["--port", "0", *extra],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def url() -> str | None:
            for line in log.read_text().splitlines():
                if line.startswith("deliver dashboard: "):
                    return line.split()[2]
            assert proc.poll() is None, log.read_text()
            return None

        yield str(wait_for(url, 20, "the dashboard's URL", describe=log.read_text))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def on_page(b: Browser) -> tuple[str, str, str]:
    """(phase, step, weight) of the only row of the list, as the page shows them."""
    return b.text("#list td.phase"), b.text("#list td.step"), b.text("#list td.weight")


def test_page_follows_a_canary_and_promotes_its_manual_gate(
    cluster: RunningCluster, kube: Kube, namespace: str, controller: ControllerProcess, run_dir: Path
) -> None:
    ns = namespace
    # Given a canary delivered once, with two timed steps and a manual promotion
    kube.apps.create_namespaced_deployment(ns, canary("web", "34,67,pause,100", interval="3s"))
    wait_stable(kube, ns, "web", controller)
    with dashboard(cluster.kubeconfig, ns, run_dir / "dashboard.log") as url, chromium(run_dir / "driver.log") as b:
        b.get(f"{url}?d={ns}%2Fweb")
        wait_for(lambda: b.text("#conn") == "live", 10, "the page's event stream")

        # When a new image arrives, the page follows every step the controller takes, within 2 s
        set_image(kube.apps, ns, "web", "example.com/web:v2")
        seen_api: dict[tuple[str, str, str], float] = {}
        seen_page: dict[tuple[str, str, str], float] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            s = state(kube, ns, "web")
            now = time.monotonic()
            seen_api.setdefault((s.get("phase", "Idle"), str(int(s.get("step", 0)) + 1), f"{s.get('weight', 0)}%"), now)
            seen_page.setdefault(on_page(b), time.monotonic())
            if s.get("phase") == "Paused" and ("Paused", "3", "67%") in seen_page:
                break
            time.sleep(0.1)
        changes = {k: seen_page[k] - seen_api[k] for k in seen_api if k in seen_page and k[0] != "Succeeded"}
        assert ("Progressing", "1", "34%") in changes and ("Progressing", "2", "67%") in changes, (seen_api, seen_page)
        assert ("Paused", "3", "67%") in changes, (seen_api, seen_page)
        lags = {f"{k[0]} step {k[1]} {k[2]}": round(v, 2) for k, v in changes.items()}
        print(f"dashboard lag behind the API per change (s): {lags}")
        assert max(changes.values()) < 2.0, lags
        assert b.text("#list td.name") == f"{ns}/web"  # the page lists the canary
        assert b.text("ol.ladder li.current") == "3. pause (manual promotion)"
        assert "new" in b.text("table.versions") and "stable" in b.text("table.versions")
        if SHOTS.is_dir():
            b.screenshot(SHOTS / "dashboard-canary.png")

        # Then the promote button (after its confirmation) moves the manual gate
        b.click('button[data-verb="promote"]')
        assert b.accept_confirm() == f"promote {ns}/web?"
        wait_for(lambda: "promote requested for" in b.text("#notice"), 10, "the request's answer on the page")
        wait_phase(kube, ns, "web", "Succeeded", ctl=controller, timeout=60)
        wait_for(lambda: on_page(b)[0] == "Succeeded", 5, "Succeeded on the page")


def test_a_user_without_rights_sees_why_and_no_button_works(
    cluster: RunningCluster, kube: Kube, namespace: str, run_dir: Path
) -> None:
    ns = namespace
    # Given a canary held at a manual promotion (as recorded), and a user with no rights at all
    kube.apps.create_namespaced_deployment(ns, canary("web", "34,pause,100"))
    kube.core.create_namespaced_service_account(
        ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    nobody = service_account_kubeconfig(kube, ns, "nobody", run_dir / "nobody.kubeconfig")
    before = kube.apps.read_namespaced_deployment("web", ns).metadata.annotations

    with dashboard(nobody, ns, run_dir / "dashboard.log") as url, chromium(run_dir / "driver.log") as b:
        b.get(f"{url}?d={ns}%2Fweb")
        # Then the page says the identity is forbidden, lists nothing and offers no button
        wait_for(lambda: "Forbidden" in b.text("#error"), 10, "the Forbidden message", describe=lambda: b.text("body"))
        message = b.text("#error")
        assert "Cannot read the cluster." in message and "may not list Deployments" in message, message
        assert b.find("button[data-verb]") == []
        # and a request sent from the page itself (token and origin right) is refused by the API
        answer = b.script(
            """const token = document.querySelector('meta[name="deliver-token"]').content;
            return fetch('/api/request', {method: 'POST', headers: {'Content-Type': 'application/json',
              'X-Deliver-Token': token}, body: JSON.stringify({namespace: arguments[0], name: 'web', verb: 'promote'})})
              .then(r => r.json().then(j => [r.status, j.message]));""",
            ns,
        )
        assert answer[0] == 403 and "Forbidden" in answer[1], answer
    after = kube.apps.read_namespaced_deployment("web", ns).metadata.annotations
    assert after == before and "deliver.dev/request" not in json.dumps(after)  # the kube-controller-manager
    # still writes the Deployment's status, so its resourceVersion moves; deliver's annotations do not


def test_a_rolled_back_canary_shows_its_evidence(
    cluster: RunningCluster,
    kube: Kube,
    jk: JsonKube,
    namespace: str,
    prometheus: Prometheus,
    apps: list[VersionedApp],  # noqa: F811 (the fixture imported above)
    analysed_controller: ControllerProcess,
    run_dir: Path,
) -> None:
    ns = namespace
    with dashboard(cluster.kubeconfig, ns, run_dir / "dashboard.log") as url, chromium(run_dir / "driver.log") as b:
        b.get(f"{url}?d={ns}%2Fweb")
        # Given a canary answering 10% errors (e2e/test_analysis.py's harness), rolled back by its analysis
        deliver_v2(kube, jk, ns, prometheus, apps, run_dir, canary_errors=BAD_ERRORS)
        wait_phase(jk, ns, "web", "RolledBack", ctl=analysed_controller, timeout=90)
        # Then the page shows the rollback, the failing verdict with its numbers, and one point per
        # analysed window the record keeps in the error-rate chart
        wait_for(lambda: on_page(b)[0] == "RolledBack", 2, "RolledBack on the page within 2 s")
        record = state(jk, ns, "web")
        # the analysed windows: the record's look points of this delivery, and the step verdicts
        # that are not among them
        looked = [p[0] for p in (record.get("looks") or {}).get("error-rate", []) if p[3] is not None]
        recorded = looked + [
            v["at"]
            for v in record.get("verdicts", [])
            for c in (v.get("details") or {}).get("checks", [])
            if c.get("name") == "error-rate"
            and (c.get("e") is not None or c.get("stat") is not None)
            and not any(abs(x - v["at"]) < 0.1 for x in looked)
        ]
        assert recorded, record
        wait_for(lambda: "error-rate: fail" in b.text("#detail"), 5, "the failing check's numbers")
        evidence = 'figure.chart:not(.rates)[data-check="error-rate"] circle'
        points = b.script(f"return document.querySelectorAll('{evidence}').length;")
        print(f"error-rate chart: {points} points, record: {len(looked)} look points, {len(recorded)} windows")
        assert points == len(recorded), (points, record)
        # and the canary's rate against the baseline's, with the judge's bound, at each window
        rates = b.script("return document.querySelectorAll('figure.rates[data-check=\"error-rate\"] circle').length;")
        assert 1 <= rates <= points, (rates, points)  # a window without traffic has no rates
        if SHOTS.is_dir():
            b.screenshot(SHOTS / "dashboard-rolled-back.png")
