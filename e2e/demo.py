"""``make demo``: two live canaries through a real Envoy, one promoted and one rolled back.

Starts (all on 127.0.0.1, all stopped again at the end): the local control plane (kwok nodes),
Prometheus, two app processes standing in for the ``shop-stable`` / ``shop-canary`` Services'
pods, Envoy programmed from the ``shop`` HTTPRoute by the stand-in gateway (``e2e.dataplane``),
a load generator (200 requests/s), and the deliver controller itself (``python -m delivery.cli
run --prometheus-url ...``). Then:

1. a good version (v2) is delivered 20 -> 50 -> 100 % and promoted on real Envoy metrics;
2. a bad version (v3, whose process fails 30 % of requests) is delivered and rolled back
   automatically by the error-rate analysis.

The live view shows each delivery's phase, step, the route's weights, the request and error
rates per version (from the clients' side) and the verdicts; a rich live table on a terminal,
plain lines otherwise (``--plain`` forces them). It exits 0 only if v2 was promoted and v3 rolled
back, and prints a summary with the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

APP = "shop"
LOAD_RATE = 200.0
BAD_FAIL_RATE = 0.3

DEMO_ANNOTATIONS: dict[str, str] = {
    "deliver.dev/strategy": "canary",
    "deliver.dev/steps": "20,50,100",
    "deliver.dev/interval": "10s",
    "deliver.dev/router": f"gateway-api/{APP}",
    "deliver.dev/analysis": "error-rate",
    "deliver.dev/analysis-metrics": "envoy",
    # ~40 canary requests/s at 20 %: 200 per arm is reached within a step; an error rate that is
    # surely below 2 % passes, so a healthy canary is not held for lack of errors to compare.
    "deliver.dev/analysis.error-rate": "min-samples=200,negligible-rate=0.02",
    "deliver.dev/on-inconclusive": "extend",
    "deliver.dev/max-extensions": "5",
}


def demo_deployment(app: str = APP, interval: str = "10s", image: str | None = None) -> client.V1Deployment:
    from e2e.helpers import make_deployment

    annotations = dict(DEMO_ANNOTATIONS, **{"deliver.dev/interval": interval,
                                            "deliver.dev/router": f"gateway-api/{app}"})
    return make_deployment(app, replicas=3, image=image or f"example.com/{app}:v1", annotations=annotations)


def demo_route(app: str = APP) -> dict[str, Any]:
    """The user's HTTPRoute: deliver's two backends on ``/``, plus an ``/admin`` rule of the user's."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": app, "labels": {"app": app}},
        "spec": {
            "parentRefs": [{"name": "demo-gateway"}],
            "hostnames": [f"{app}.example.com"],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                 "backendRefs": [{"name": f"{app}-admin", "port": 8080}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                 "backendRefs": [{"name": f"{app}-stable", "port": 80, "weight": 100},
                                 {"name": f"{app}-canary", "port": 80, "weight": 0}]},
            ],
        },
    }
