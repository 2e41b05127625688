"""An in-memory stand-in for delivery.kube.Kube: get/list/create/replace/patch with resourceVersion.

Only what the CLI, gate and leader election unit tests need. Writes bump a global resourceVersion;
a write carrying a stale metadata.resourceVersion raises Conflict, like the API server.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from delivery.errors import Conflict, KubeError, NotFound
from delivery.kube import Resource


def _merge(base: Any, patch: Any) -> Any:
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    out = dict(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(base.get(k), v)
    return out


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rv = 100
        self.fail_next: list[KubeError] = []
        self.calls: list[tuple[str, str]] = []
        self.watch_events: list[list[dict[str, Any]]] = []

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        return obj

    def _check(self) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)

    def put(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        meta.setdefault("namespace", "ns")
        meta.setdefault("uid", f"uid-{meta['name']}")
        self.objects[(res.plural, meta["namespace"], meta["name"])] = self._bump(copy.deepcopy(obj))
        return self.objects[(res.plural, meta["namespace"], meta["name"])]

    def get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        self.calls.append(("get", res.plural))
        self._check()
        try:
            return copy.deepcopy(self.objects[(res.plural, namespace or "", name)])
        except KeyError:
            raise NotFound(f"{res.plural} {namespace}/{name} not found", status=404) from None

    def items(
        self,
        res: Resource,
        namespace: str | None = None,
        selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        self.calls.append(("list", res.plural))
        self._check()
        return [
            copy.deepcopy(o)
            for (plural, ns, _), o in sorted(self.objects.items())
            if plural == res.plural and (namespace is None or ns == namespace)
        ]

    def list(
        self,
        res: Resource,
        namespace: str | None = None,
        selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        return {"items": self.items(res, namespace), "metadata": {"resourceVersion": str(self.rv)}}

    def create(self, res: Resource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", res.plural))
        self._check()
        key = (res.plural, namespace or "", body["metadata"]["name"])
        if key in self.objects:
            raise Conflict("already exists", status=409)
        obj = copy.deepcopy(body)
        obj["metadata"]["namespace"] = namespace
        self.objects[key] = self._bump(obj)
        return copy.deepcopy(self.objects[key])

    def replace(self, res: Resource, namespace: str | None, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("update", res.plural))
        self._check()
        key = (res.plural, namespace or "", name)
        if key not in self.objects:
            raise NotFound("not found", status=404)
        if body["metadata"].get("resourceVersion") != self.objects[key]["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified", status=409)
        self.objects[key] = self._bump(copy.deepcopy(body))
        return copy.deepcopy(self.objects[key])

    def patch(
        self, res: Resource, namespace: str | None, name: str, patch: Any, content_type: str = "", sub: str = ""
    ) -> dict[str, Any]:
        self.calls.append(("patch", res.plural))
        self._check()
        key = (res.plural, namespace or "", name)
        if key not in self.objects:
            raise NotFound("not found", status=404)
        current = self.objects[key]
        if isinstance(patch, list):  # JSON patch: test + replace only
            obj = copy.deepcopy(current)
            for op in patch:
                parts = op["path"].strip("/").split("/")
                target = obj
                for p in parts[:-1]:
                    target = target[p]
                if op["op"] == "test":
                    if target.get(parts[-1]) != op["value"]:
                        raise KubeError("test failed", status=422)
                elif op["op"] in ("replace", "add"):
                    target[parts[-1]] = copy.deepcopy(op["value"])
            self.objects[key] = self._bump(obj)
        else:
            want = (patch.get("metadata") or {}).get("resourceVersion")
            if want is not None and want != current["metadata"]["resourceVersion"]:
                raise Conflict("the object has been modified", status=409)
            self.objects[key] = self._bump(_merge(current, patch))
        return copy.deepcopy(self.objects[key])

    def watch(
        self, res: Resource, namespace: str | None, resource_version: str, timeout_seconds: int = 240
    ) -> Iterator[dict[str, Any]]:
        self.calls.append(("watch", res.plural))
        self._check()
        batch = self.watch_events.pop(0) if self.watch_events else []
        for event in batch:
            if callable(event):
                event = event(self)
            if event:
                yield event
