"""The one in-memory stand-in for the Kubernetes API (``delivery.kube.client.Kube``), for unit tests.

What it honours, like the API server:

* label selectors (the strings ``selector_string`` builds: ``a=b``, ``a!=b``, ``a in (x,y)``,
  ``a notin (x)``, ``a``, ``!a``; or a ``matchLabels``/``matchExpressions`` dict) and simple field
  selectors (``metadata.name=x``, ``involvedObject.name=web``);
* ``metadata.generateName``, uid, creationTimestamp, ``metadata.generation`` (bumped when ``spec``
  changes) and a cluster-wide resourceVersion bumped by every change;
* optimistic concurrency: a replace or merge patch carrying a stale ``metadata.resourceVersion`` is a
  409 Conflict, a create of a taken name is a 409, a failed JSON-patch ``test`` op is a 422;
* invalid objects are a 422 (names, label keys/values, annotation values that are not strings, a
  Deployment/ReplicaSet selector that does not select its template, a changed selector);
* merge patch (RFC 7386), JSON patch (RFC 6902) and a strategic merge patch that merges lists of
  named items (containers, env, ports ...) by ``name``;
* the ``status`` subresource: writes to the main resource keep the old status, ``sub="status"``
  writes change only the status;
* background garbage collection by ownerReferences on delete;
* watches replaying the changes after a resourceVersion (410 Gone before ``compact()``);
* CRDs served only while ``installed`` (discovery through ``request("GET", "/apis/G/V")``).

It runs no controllers: tests put the ReplicaSets, pods and statuses a controller would make
(``put``, ``update_status``). It can be told to fail: ``fail_next(error, verb=, resource=)`` makes
the next matching calls raise, ``fail_at_write(k, error)`` and ``crash_at_write(k)`` make the k-th
write from now raise (``Crash`` stands for the controller process dying there: nothing catches it).
Every write attempted through the API is in ``writes``; ``put``/``update_status`` are the cluster's
own doing and are not.
"""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from delivery.errors import Conflict, Gone, KubeError, NotFound
from delivery.kube.client import (
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS,
    JSON_PATCH,
    LEASES,
    MERGE,
    NAMESPACES,
    PDBS,
    PODS,
    REPLICASETS,
    SERVICES,
    STRATEGIC,
    Resource,
)
from delivery.routing.gateway import HTTPROUTES
from delivery.routing.istio import VIRTUALSERVICES
from delivery.routing.nginx import INGRESSES
from delivery.routing.smi import TRAFFICSPLITS

JSON = dict[str, Any]
ANNOTATIONS_LIMIT = 256 * 1024  # bytes, keys and values of all of an object's annotations together
WRITE_VERBS = ("create", "replace", "patch", "delete")
VERSION = Resource("", "", "version", namespaced=False)  # GET /version, for fail_next(resource=VERSION)
BUILT_IN = {DEPLOYMENTS, REPLICASETS, PODS, SERVICES, EVENTS, CONFIGMAPS, LEASES, NAMESPACES, INGRESSES, PDBS}
BUILT_IN_GROUPS = {r.group for r in BUILT_IN}
WITH_STATUS = {DEPLOYMENTS.plural, REPLICASETS.plural, PODS.plural, SERVICES.plural}
WITH_SELECTOR = {DEPLOYMENTS.plural, REPLICASETS.plural}


class Crash(BaseException):
    """The controller died at this call (``crash_at_write``): not an API error, nothing handles it."""


class Write(NamedTuple):
    """One write attempted through the API (also the ones that failed)."""

    verb: str  # create | replace | patch | delete
    plural: str
    name: str
    body: Any  # the body, the patch, or None for a delete
    content_type: str


@dataclass
class _Failure:
    error: BaseException
    verb: str | None  # a verb, "write" (any write), or None (any call)
    plural: str | None
    at_write: int = 0  # > 0: raised by that write (counted from when it was armed), not the next call


def clone(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars): ``copy.deepcopy`` without its memo and
    dispatch, several times faster; the fake copies every object it hands out or takes in."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    if isinstance(value, tuple):
        return tuple(clone(v) for v in value)
    return value


# ------------------------------------------------------------------ selectors

_REQ = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<nkey>[^\s=!,()]+)"
    r"|(?P<key>[^\s=!,()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^\s,()]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*$"
)


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def selector_matches(selector: str | JSON | None, labels: dict[str, str] | None) -> bool:
    """Does a label selector (string or matchLabels/matchExpressions dict) select these labels?"""
    labels = labels or {}
    if not selector:
        return True
    if isinstance(selector, dict):
        return _dict_selects(selector, labels)
    return all(_requirement_holds(part, labels) for part in _split_top(selector))


def _dict_selects(selector: JSON, labels: dict[str, str]) -> bool:
    """A matchLabels/matchExpressions selector."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _requirement_holds(part: str, labels: dict[str, str]) -> bool:
    """One requirement of a selector string (``k=v``, ``k!=v``, ``k in (a,b)``, ``k``, ``!k``)."""
    m = _REQ.match(part)
    if not m:
        raise KubeError(f"unable to parse requirement: {part!r}", status=400, reason="BadRequest")
    if m["not"]:
        return m["nkey"] not in labels
    if m["op"]:
        equal = labels.get(m["key"]) == m["value"]
        return equal == (m["op"] != "!=")
    if m["setop"]:
        values = [v.strip() for v in m["values"].split(",") if v.strip()]
        has = m["key"] in labels and labels[m["key"]] in values
        return has if m["setop"] == "in" else not has
    return m["key"] in labels


def _field(obj: JSON, dotted: str) -> str:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def field_selector_matches(selector: str | None, obj: JSON) -> bool:
    for part in _split_top(selector or ""):
        m = re.match(r"^\s*([^=!]+?)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if m is None:
            raise KubeError(f"invalid field selector: {part!r}", status=400, reason="BadRequest")
        key, op, value = m.groups()
        if (_field(obj, key) == value) != (op != "!="):
            return False
    return True


# ------------------------------------------------------------------ patches


def merge_patch(base: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    out = dict(base) if isinstance(base, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def strategic_merge_patch(base: Any, patch: Any) -> Any:
    """Merge patch, except that lists of named objects (containers, env, ports ...) merge by name."""
    if isinstance(patch, list) and isinstance(base, list):
        named = all(isinstance(x, dict) and "name" in x for x in base + patch)
        if not named:
            return clone(patch)
        merged = [clone(x) for x in base]
        for item in patch:
            index = next((i for i, x in enumerate(merged) if x["name"] == item["name"]), None)
            if item.get("$patch") == "delete":
                if index is not None:
                    merged.pop(index)
            elif index is None:
                merged.append(clone(item))
            else:
                merged[index] = strategic_merge_patch(merged[index], item)
        return merged
    if not isinstance(patch, dict):
        return clone(patch)
    out = dict(base) if isinstance(base, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = strategic_merge_patch(out.get(k), v)
    return out


def _invalid(message: str) -> KubeError:
    return KubeError(f"422 Invalid: {message}", status=422, reason="Invalid")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _invalid(f"JSON pointer {path!r} must start with /")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _resolve(doc: Any, tokens: list[str], path: str) -> Any:
    for t in tokens:
        if isinstance(doc, list):
            if not t.isdigit() or int(t) >= len(doc):
                raise _invalid(f"{path}: index {t} out of range")
            doc = doc[int(t)]
        elif isinstance(doc, dict) and t in doc:
            doc = doc[t]
        else:
            raise _invalid(f"{path}: no such path")
    return doc


def json_patch(doc: Any, ops: list[JSON]) -> Any:
    """RFC 6902 (add, remove, replace, move, copy, test), atomic: any failed op is a 422."""
    doc = clone(doc)
    for op in ops:
        doc = _patch_op(doc, op)
    return doc


def _patch_op(doc: Any, op: JSON) -> Any:
    """One operation on ``doc`` (changed in place where it can be); the document after it."""
    kind, path = op.get("op"), op.get("path", "")
    tokens = _pointer(path)
    if kind == "test":
        if _resolve(doc, tokens, path) != op.get("value"):
            raise _invalid(f"test failed at {path}")
        return doc
    if kind in ("move", "copy"):
        value = clone(_resolve(doc, _pointer(op["from"]), op["from"]))
        if kind == "move":
            doc = json_patch(doc, [{"op": "remove", "path": op["from"]}])
        return json_patch(doc, [{"op": "add", "path": path, "value": value}])
    if not tokens:
        if kind in ("add", "replace"):
            return clone(op["value"])
        raise _invalid("cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1], path)
    if kind == "add":
        _add(parent, tokens[-1], op["value"], path)
    elif kind in ("remove", "replace"):
        _remove_or_replace(parent, tokens[-1], kind == "remove", op["value"] if kind == "replace" else None, path)
    else:
        raise _invalid(f"unknown JSON patch op {kind!r}")
    return doc


def _add(parent: Any, key: str, value: Any, path: str) -> None:
    if isinstance(parent, list):
        if key == "-":
            parent.append(clone(value))
        elif key.isdigit() and int(key) <= len(parent):
            parent.insert(int(key), clone(value))
        else:
            raise _invalid(f"{path}: index out of range")
    elif isinstance(parent, dict):
        parent[key] = clone(value)
    else:
        raise _invalid(f"{path}: parent is not a container")


def _remove_or_replace(parent: Any, key: str, remove: bool, value: Any, path: str) -> None:
    _resolve(parent, [key], path)  # must exist
    if isinstance(parent, list):
        if remove:
            parent.pop(int(key))
        else:
            parent[int(key)] = clone(value)
    elif remove:
        del parent[key]
    else:
        parent[key] = clone(value)


# ------------------------------------------------------------------ validation

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _check_key(key: str, what: str) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        raise _invalid(f"{what} key {key!r}: invalid prefix")
    if len(name) > 63 or not _LABEL_NAME.match(name):
        raise _invalid(f"{what} key {key!r}: invalid name")


def validate(res: Resource, obj: JSON, old: JSON | None) -> None:
    """The API server's checks that deliver could run into (a 422 each)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    if res.plural == SERVICES.plural:
        if len(name) > 63 or not _DNS1035_LABEL.match(name):
            raise _invalid(f"Service name {name!r} must be a DNS-1035 label")
    elif len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        raise _invalid(f"metadata.name {name!r} must be a DNS-1123 subdomain")
    for key, value in (meta.get("labels") or {}).items():
        _check_key(key, "label")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            raise _invalid(f"label {key}={value!r}: invalid value")
    for key, value in (meta.get("annotations") or {}).items():
        _check_key(key, "annotation")
        if not isinstance(value, str):
            raise _invalid(f"annotation {key}: value must be a string, not {type(value).__name__}")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in (meta.get("annotations") or {}).items())
    if size > ANNOTATIONS_LIMIT:
        raise _invalid(f"metadata.annotations: Too long: must have at most {ANNOTATIONS_LIMIT} bytes")
    if res.plural in WITH_SELECTOR:
        spec = obj.get("spec") or {}
        selector = spec.get("selector") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            raise _invalid("spec.selector: empty selector")
        if not selector_matches(selector, labels):
            raise _invalid("spec.template.metadata.labels: `selector` does not match template `labels`")
        if old is not None and (old.get("spec") or {}).get("selector") != selector:
            raise _invalid("spec.selector: field is immutable")


# ------------------------------------------------------------------ the fake


def _now_text(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKube:
    """An in-memory API server holding plain JSON objects, keyed (plural, namespace, name)."""

    def __init__(
        self,
        namespace: str = "ns",
        installed: tuple[Resource, ...] = (HTTPROUTES, VIRTUALSERVICES, TRAFFICSPLITS),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.namespace = namespace  # where put() places objects without a namespace
        self.clock = clock
        self.objects: dict[tuple[str, str, str], JSON] = {}
        self.installed: set[Resource] = set(installed)  # CRDs served; built-in groups always are
        self.rv = 100
        self.compacted = 0  # watches from a resourceVersion below this are Gone
        self.history: list[tuple[int, str, str, str, JSON]] = []  # (rv, plural, namespace, type, object)
        self.writes: list[Write] = []
        self.pages: list[tuple[str, int]] = []  # (resource, items) of each paged list (limit given)
        self.calls: list[tuple[str, str]] = []
        self.watch_events: list[list[Any]] = []  # scripted watch batches (objects or callables(fake))
        self._failures: list[_Failure] = []
        self._before_write: list[tuple[Callable[[FakeKube], object], Callable[[Write], bool] | None]] = []
        self._serial = 0
        # deliver's MutatingAdmissionPolicy (delivery/engine/holdpolicy.py), as the API server runs it: a
        # write that changes the pod template of a Deployment with deliver.dev/strategy is stored paused
        self.hold_policy = False
        self.server_version: JSON = {"major": "1", "minor": "36", "gitVersion": "v1.36.0", "platform": "linux/amd64"}

    def _admit(self, res: Resource, old: JSON | None, new: JSON, sub: str = "") -> None:
        if not self.hold_policy or old is None or res.plural != "deployments" or sub:
            return
        annotations = (new.get("metadata") or {}).get("annotations") or {}
        if "deliver.dev/strategy" not in annotations:
            return
        if (new.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
            new.setdefault("spec", {})["paused"] = True

    # ---- telling it to fail ----

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "fail_next":  # the older spelling `fake.fail_next = [errors]`: the next calls fail
            self._failures = [_Failure(e, None, None) for e in value]
            return
        super().__setattr__(name, value)

    def fail_next(self, *errors: BaseException, verb: str | None = None, resource: Resource | None = None) -> None:
        """The next calls (of ``verb``: get/list/create/replace/patch/delete/watch or "write", on
        ``resource``; any call by default) raise these errors, one each, in order."""
        self._failures += [_Failure(e, verb, resource.plural if resource else None) for e in errors]

    def fail_at_write(self, k: int, error: BaseException, resource: Resource | None = None) -> None:
        """The k-th write from now (1 = the next one; on ``resource`` if given) raises ``error`` and changes nothing."""
        if k < 1:
            raise ValueError("k counts from 1")
        self._failures.append(_Failure(error, "write", resource.plural if resource else None, at_write=k))

    def crash_at_write(self, k: int, resource: Resource | None = None) -> None:
        """The controller dies at the k-th write from now: that write raises ``Crash`` and does not happen."""
        self.fail_at_write(k, Crash(f"crashed at write {k}"), resource)

    def before_write(self, fn: Callable[[FakeKube], object], match: Callable[[Write], bool] | None = None) -> None:
        """Run ``fn(fake)`` once, just before the next write (that ``match``es) reaches the store: a
        concurrent writer getting in between deliver's read and its write."""
        self._before_write.append((fn, match))

    def _enter(self, verb: str, res: Resource) -> None:
        self.calls.append((verb, res.plural))
        write = verb in WRITE_VERBS
        for failure in list(self._failures):
            if failure.plural not in (None, res.plural):
                continue
            if failure.at_write:
                if not write:
                    continue
                failure.at_write -= 1
                if failure.at_write:
                    continue
            elif failure.verb not in (None, verb) and not (failure.verb == "write" and write):
                continue
            self._failures.remove(failure)
            raise failure.error
        if write:
            for hook in list(self._before_write):
                fn, match = hook
                if match is None or match(self.writes[-1]):
                    self._before_write.remove(hook)
                    fn(self)

    # ---- the cluster's own doing (no API call, never fails, not in `writes`) ----

    def _key(self, res: Resource, namespace: str | None, name: str) -> tuple[str, str, str]:
        return (res.plural, (namespace or "") if res.namespaced else "", name)

    def _bump(self, obj: JSON) -> JSON:
        self.rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        return obj

    def _store(self, res: Resource, obj: JSON, event: str) -> JSON:
        meta = obj["metadata"]
        key = self._key(res, meta.get("namespace"), meta["name"])
        self._bump(obj)
        self.objects[key] = obj
        self.history.append((self.rv, res.plural, key[1], event, clone(obj)))
        return clone(obj)

    def put(self, res: Resource, obj: JSON) -> JSON:
        """Store an object as is (the test's given), filling namespace, uid and creationTimestamp."""
        obj = clone(obj)
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            meta.setdefault("namespace", self.namespace)
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("creationTimestamp", _now_text(self.clock))
        meta.setdefault("generation", 1)
        old = self.objects.get(self._key(res, meta.get("namespace"), meta["name"]))
        self._admit(res, old, obj)
        self._store(res, obj, "MODIFIED" if old is not None else "ADDED")
        return self.obj(res, meta["name"], meta.get("namespace"))

    def obj(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
        """The stored object itself (not a copy): tests may change it to play a concurrent writer."""
        return self.objects[self._key(res, namespace or self.namespace, name)]

    def find(
        self, res: Resource, namespace: str | None = None, selector: str | JSON | None = None
    ) -> builtins.list[JSON]:
        """Copies of the stored objects of a kind (no API call)."""
        return [
            clone(o)
            for (plural, ns, _), o in sorted(self.objects.items())
            if plural == res.plural
            and (namespace is None or ns == namespace)
            and selector_matches(selector, (o.get("metadata") or {}).get("labels"))
        ]

    def update_status(self, res: Resource, name: str, status: JSON, namespace: str | None = None) -> JSON:
        """A controller's status write (merged into the current status)."""
        obj = self.obj(res, name, namespace)
        obj["status"] = merge_patch(obj.get("status") or {}, status)
        return self._store(res, obj, "MODIFIED")

    def remove(self, res: Resource, name: str, namespace: str | None = None) -> None:
        """Delete an object behind deliver's back (no API call, no garbage collection)."""
        obj = self.objects.pop(self._key(res, namespace or self.namespace, name))
        self.rv += 1
        self.history.append((self.rv, res.plural, obj["metadata"].get("namespace", ""), "DELETED", obj))

    def compact(self) -> None:
        """Forget the change history: a watch from an older resourceVersion gets 410 Gone."""
        self.compacted = self.rv
        self.history.clear()

    # ---- the Kube protocol ----

    def _served(self, res: Resource, path: str) -> None:
        if res.group not in BUILT_IN_GROUPS and res not in self.installed:
            raise NotFound(f"{path}: 404 page not found", status=404, reason="NotFound")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> JSON:
        """Discovery only: ``GET /apis/GROUP/VERSION`` lists the installed resources of that group;
        ``GET /version`` is ``server_version``."""
        if method == "GET" and path == "/version":
            self._enter("get", VERSION)
            return clone(self.server_version)
        if method != "GET" or not path.startswith("/apis/"):
            raise NotImplementedError(f"FakeKube.request {method} {path}")
        served = [r for r in self.installed | BUILT_IN if path == f"/apis/{r.group}/{r.version}"]
        if not served:
            raise NotFound(f"GET {path}: 404 page not found", status=404, reason="NotFound")
        return {"kind": "APIResourceList", "resources": [{"name": r.plural} for r in served]}

    def get(self, res: Resource, namespace: str | None, name: str) -> JSON:
        self._enter("get", res)
        self._served(res, res.path(namespace, name))
        try:
            return clone(self.objects[self._key(res, namespace, name)])
        except KeyError:
            raise NotFound(f"{res.plural} {namespace}/{name} not found", status=404, reason="NotFound") from None

    def items(
        self,
        res: Resource,
        namespace: str | None = None,
        selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[JSON]:
        self._enter("list", res)
        self._served(res, res.path(namespace))
        return [o for o in self.find(res, namespace, selector) if field_selector_matches(field_selector, o)]

    def list(
        self,
        res: Resource,
        namespace: str | None = None,
        selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> JSON:
        """With ``limit``: pages in name order, ``metadata.continue`` the offset of the next page (the
        API server's tokens are opaque; the pages all carry the first page's resourceVersion)."""
        found = self.items(res, namespace, selector, field_selector)
        meta: JSON = {"resourceVersion": str(self.rv)}
        if limit:
            start = int(continue_token or 0)
            found = sorted(found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            if start + limit < len(found):
                meta["continue"] = str(start + limit)
            found = found[start : start + limit]
            self.pages.append((res.plural, len(found)))
        return {"items": found, "metadata": meta}

    def _write(self, verb: str, res: Resource, name: str, body: Any, content_type: str = "") -> None:
        self.writes.append(Write(verb, res.plural, name, clone(body), content_type))
        self._enter(verb, res)
        self._served(res, res.path(None, name))

    def create(self, res: Resource, namespace: str | None, body: JSON) -> JSON:
        meta = body.get("metadata") or {}
        self._write("create", res, meta.get("name") or meta.get("generateName", ""), body)
        obj = clone(body)
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            if meta.get("namespace") not in (None, namespace):
                raise KubeError(
                    "the namespace of the provided object does not match the namespace sent on the request",
                    status=400,
                    reason="BadRequest",
                )
            meta["namespace"] = namespace
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise _invalid("metadata.name: name or generateName is required")
            self._serial += 1
            meta["name"] = f"{meta['generateName']}{self._serial:05x}"
        key = self._key(res, namespace, meta["name"])
        if key in self.objects:
            raise Conflict(f"{res.plural} {meta['name']!r} already exists", status=409, reason="AlreadyExists")
        validate(res, obj, None)
        self._serial += 1
        meta["uid"] = f"uid-{res.plural}-{meta['name']}-{self._serial}"
        meta["creationTimestamp"] = _now_text(self.clock)
        meta["generation"] = 1
        meta.pop("resourceVersion", None)
        if res.plural in WITH_STATUS:
            obj.pop("status", None)
        return self._store(res, obj, "ADDED")

    def _current(self, res: Resource, namespace: str | None, name: str) -> JSON:
        try:
            return self.objects[self._key(res, namespace, name)]
        except KeyError:
            raise NotFound(f"{res.plural} {namespace}/{name} not found", status=404, reason="NotFound") from None

    def _update(self, res: Resource, current: JSON, new: JSON, sub: str) -> JSON:
        """Store ``new`` in place of ``current`` with the server's rules for what a write may change."""
        new = clone(new)
        meta = new.setdefault("metadata", {})
        old_meta = current["metadata"]
        for fixed in ("name", "namespace", "uid", "creationTimestamp"):
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
        if res.plural in WITH_STATUS:
            if sub == "status":
                new = dict(current, status=new.get("status"))
                meta = new["metadata"] = clone(old_meta)
            elif "status" in current:
                new["status"] = clone(current["status"])
            else:
                new.pop("status", None)
        self._admit(res, current, new, sub)
        validate(res, new, current)
        generation = int(old_meta.get("generation") or 1)
        meta["generation"] = generation + 1 if new.get("spec") != current.get("spec") else generation
        return self._store(res, new, "MODIFIED")

    def replace(self, res: Resource, namespace: str | None, name: str, body: JSON) -> JSON:
        self._write("replace", res, name, body)
        current = self._current(res, namespace, name)
        want = (body.get("metadata") or {}).get("resourceVersion")
        if want and want != current["metadata"]["resourceVersion"]:
            raise Conflict(
                f"Operation cannot be fulfilled on {res.plural} {name!r}: the object has been modified",
                status=409,
                reason="Conflict",
            )
        return self._update(res, current, body, "")

    def patch(
        self, res: Resource, namespace: str | None, name: str, patch: Any, content_type: str = MERGE, sub: str = ""
    ) -> JSON:
        self._write("patch", res, name, patch, content_type)
        current = self._current(res, namespace, name)
        if content_type == JSON_PATCH:
            if not isinstance(patch, list):
                raise KubeError("a JSON patch is a list of operations", status=400, reason="BadRequest")
            new = json_patch(current, patch)
        elif content_type in (MERGE, STRATEGIC):
            if not isinstance(patch, dict):
                raise KubeError("a merge patch is an object", status=400, reason="BadRequest")
            want = (patch.get("metadata") or {}).get("resourceVersion")
            if want is not None and want != current["metadata"]["resourceVersion"]:
                raise Conflict(
                    f"Operation cannot be fulfilled on {res.plural} {name!r}: the object has been modified",
                    status=409,
                    reason="Conflict",
                )
            new = (merge_patch if content_type == MERGE else strategic_merge_patch)(current, patch)
        else:
            raise KubeError(f"415 unsupported patch type {content_type!r}", status=415, reason="UnsupportedMediaType")
        return self._update(res, current, new, sub)

    def delete(self, res: Resource, namespace: str | None, name: str, propagation: str = "Background") -> None:
        self._write("delete", res, name, None)
        key = self._key(res, namespace, name)
        obj = self.objects.pop(key, None)
        if obj is None:
            return  # like KubeClient.delete: already gone is fine
        self.rv += 1
        self.history.append((self.rv, res.plural, key[1], "DELETED", clone(obj)))
        self._collect(obj["metadata"]["uid"], orphan=propagation == "Orphan")

    def _collect(self, uid: str, orphan: bool) -> None:
        """Garbage collection: dependents of a deleted owner go too (or lose the reference)."""
        for key, obj in list(self.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if not any(r.get("uid") == uid for r in refs):
                continue
            if orphan:
                obj["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                self._store(Resource("", "", key[0]), obj, "MODIFIED")
                continue
            del self.objects[key]
            self.rv += 1
            self.history.append((self.rv, key[0], key[1], "DELETED", clone(obj)))
            self._collect(obj["metadata"]["uid"], orphan=False)

    def watch(
        self, res: Resource, namespace: str | None, resource_version: str, timeout_seconds: int = 240
    ) -> Iterator[JSON]:
        """Scripted batches first (``watch_events``); else the changes after ``resource_version``, then
        the watch ends as a server-side timeout would."""
        self._enter("watch", res)
        if self.watch_events:
            for event in self.watch_events.pop(0):
                if callable(event):
                    event = event(self)
                if event:
                    yield event
            return
        since = int(resource_version or 0)
        if since < self.compacted:
            raise Gone(f"WATCH {res.path(namespace)}: too old resource version: {since}", status=410)
        for rv, plural, ns, kind, obj in list(self.history):
            if rv > since and plural == res.plural and (namespace is None or ns == namespace):
                yield {"type": kind, "object": clone(obj)}
