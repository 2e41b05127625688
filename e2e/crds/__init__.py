"""The route CRDs the weighted routers patch, installed into the local control plane for e2e.

from e2e import crds
crds.install(api_client)                  # all three, waits until each is Established
crds.install(api_client, ["httproute"])   # only Gateway API's HTTPRoute
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

HERE = Path(__file__).resolve().parent
FILES: dict[str, str] = {
    "httproute": "gateway-api-httproute.yaml",
    "virtualservice": "istio-virtualservice.yaml",
    "trafficsplit": "smi-trafficsplit.yaml",
}


def load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((HERE / FILES[name]).read_text()))


def install(api: client.ApiClient, names: list[str] | None = None, timeout: float = 60.0) -> list[str]:
    """Create (or replace) the CRDs and wait until the API server serves each; returns their names."""
    ext = client.ApiextensionsV1Api(api)
    installed = []
    for name in names or list(FILES):
        body = load(name)
        crd_name = body["metadata"]["name"]
        try:
            current = ext.read_custom_resource_definition(crd_name)
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            ext.replace_custom_resource_definition(crd_name, body)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            ext.create_custom_resource_definition(body)
        installed.append(crd_name)
    deadline = time.monotonic() + timeout
    for crd_name in installed:
        while True:
            crd = ext.read_custom_resource_definition(crd_name)
            conditions = {c.type: c.status for c in (crd.status.conditions or [])} if crd.status else {}
            if conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {crd_name} not Established after {timeout:.0f}s: {conditions}")
            time.sleep(0.2)
    # Discovery lags Established by a moment; wait until the group/version serves the plural.
    from delivery.errors import KubeError
    from delivery.kube.client import KubeClient as JsonKube

    jk = JsonKube(api)
    for name in names or list(FILES):
        body = load(name)
        plural, group = body["metadata"]["name"].split(".", 1)
        version = next(v["name"] for v in body["spec"]["versions"] if v["storage"])
        while True:
            try:
                found = jk.request("GET", f"/apis/{group}/{version}")
                if any(r.get("name") == plural for r in found.get("resources") or []):
                    break
            except KubeError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"/apis/{group}/{version} does not serve {plural}")
            time.sleep(0.2)
    return installed


def uninstall(api: client.ApiClient, names: list[str] | None = None) -> None:
    ext = client.ApiextensionsV1Api(api)
    for name in names or list(FILES):
        try:
            ext.delete_custom_resource_definition(load(name)["metadata"]["name"])
        except client.ApiException as exc:
            if exc.status != 404:
                raise
