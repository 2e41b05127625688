"""Kubernetes access: the only module that talks to the API server.

Built on the official ``kubernetes`` client for configuration (kubeconfig, contexts, in-cluster
service account, TLS, auth plugins) and transport, but speaking plain JSON dicts: deliver patches
the user's objects and must never drop fields it does not model. Every error is mapped onto the
``delivery.errors`` tree. Watches stream with a server-side timeout and a client-side read timeout.
"""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import HTTPError as Urllib3Error

from delivery.errors import Conflict, Forbidden, Gone, KubeError, NotFound, Unauthorized

log = logging.getLogger("deliver.kube")

JSON = dict[str, Any]
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the REST API."""

    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name)}"
        if sub:
            base += f"/{sub}"
        return base


DEPLOYMENTS = Resource("apps", "v1", "deployments")
REPLICASETS = Resource("apps", "v1", "replicasets")
PODS = Resource("", "v1", "pods")
SERVICES = Resource("", "v1", "services")
EVENTS = Resource("", "v1", "events")
CONFIGMAPS = Resource("", "v1", "configmaps")
LEASES = Resource("coordination.k8s.io", "v1", "leases")
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)
# (the route objects' resources, HTTPROUTES and the like, live with their routers: delivery/routing/)
PDBS = Resource("policy", "v1", "poddisruptionbudgets")
MUTATING_POLICIES = Resource("admissionregistration.k8s.io", "v1", "mutatingadmissionpolicies", namespaced=False)
MUTATING_POLICY_BINDINGS = Resource(
    "admissionregistration.k8s.io", "v1", "mutatingadmissionpolicybindings", namespaced=False
)
VALIDATING_POLICIES = Resource("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies", namespaced=False)
VALIDATING_POLICY_BINDINGS = Resource(
    "admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings", namespaced=False
)
TOKENREVIEWS = Resource("authentication.k8s.io", "v1", "tokenreviews", namespaced=False)
SUBJECTACCESSREVIEWS = Resource("authorization.k8s.io", "v1", "subjectaccessreviews", namespaced=False)


def _error(exc: ApiException, what: str) -> KubeError:
    status = exc.status or 0
    reason, message = exc.reason or "", ""
    try:
        body = json.loads(exc.body or "{}")
        message = body.get("message", "")
        reason = body.get("reason", reason)
    except (ValueError, TypeError):
        message = str(exc.body or "")[:300]
    text = f"{what}: {status} {reason}: {message}".strip()
    cls = {404: NotFound, 409: Conflict, 403: Forbidden, 401: Unauthorized, 410: Gone}.get(status, KubeError)
    return cls(text, status=status, reason=reason)


@runtime_checkable
class Kube(Protocol):
    """What the engine, the CLI and the routers need from the Kubernetes API (plain JSON dicts).

    ``KubeClient`` below is the real one; ``tests/fakekube.py`` holds the one in-memory fake.
    Errors are raised as the ``delivery.errors`` tree: NotFound (404), Conflict (409: stale
    resourceVersion, name taken), KubeError with status 422 (invalid object, failed JSON-patch
    ``test``), Gone (410: watch too old), Forbidden, Unauthorized.
    """

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> JSON:
        """One raw request (discovery reads such as ``GET /apis/GROUP/VERSION``)."""
        ...

    def get(self, res: Resource, namespace: str | None, name: str) -> JSON: ...

    def list(
        self,
        res: Resource,
        namespace: str | None = None,
        selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> JSON:
        """The List object: ``items`` and ``metadata.resourceVersion`` to watch from. With ``limit``, one
        page: ``metadata.continue`` (when more follow) is the ``continue_token`` of the next."""
        ...

    def items(
        self,
        res: Resource,
        namespace: str | None = None,
        selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[JSON]:
        """The objects matching a label selector string (``selector_string``) and a field selector."""
        ...

    def create(self, res: Resource, namespace: str | None, body: JSON) -> JSON:
        """Create (``metadata.generateName`` allowed); Conflict when the name is taken."""
        ...

    def patch(
        self, res: Resource, namespace: str | None, name: str, patch: Any, content_type: str = MERGE, sub: str = ""
    ) -> JSON:
        """Merge, strategic-merge or JSON patch; ``metadata.resourceVersion`` in a merge patch is a precondition."""
        ...

    def replace(self, res: Resource, namespace: str | None, name: str, body: JSON) -> JSON:
        """PUT the whole object; Conflict when its ``metadata.resourceVersion`` is stale."""
        ...

    def delete(self, res: Resource, namespace: str | None, name: str, propagation: str = "Background") -> None:
        """Delete; an object that is already gone is not an error."""
        ...

    def watch(
        self, res: Resource, namespace: str | None, resource_version: str, timeout_seconds: int = 240
    ) -> Iterator[JSON]:
        """Watch events after ``resource_version``; Gone when it is too old (relist)."""
        ...


@dataclass(frozen=True)
class Impersonation:
    """Whom every request acts as, kubectl's ``--as`` and ``--as-group``: the API server authorizes the
    request as this user and these groups (the caller needs the ``impersonate`` verb on them)."""

    user: str
    groups: tuple[str, ...] = ()

    def headers(self) -> builtins.list[tuple[str, str]]:
        """One ``Impersonate-User`` header and one ``Impersonate-Group`` header per group (the API
        server reads each header line as one group: a comma does not separate them)."""
        return [("Impersonate-User", self.user)] + [("Impersonate-Group", g) for g in self.groups]


class KubeClient:
    """The real ``Kube``: a small JSON client over one configured ``kubernetes.client.ApiClient``.

    ``timeout``: seconds one attempt of a request may take (connecting and reading together), None for
    no limit; ``impersonate``: the user and groups every request acts as.
    """

    def __init__(
        self, api: client.ApiClient, timeout: float | None = 15.0, impersonate: Impersonation | None = None
    ) -> None:
        self.api = api
        self.timeout = timeout
        self.impersonate = impersonate

    @classmethod
    def connect(
        cls,
        kubeconfig: str | None = None,
        context: str | None = None,
        timeout: float | None = 15.0,
        impersonate: Impersonation | None = None,
        retries: int | None = None,
    ) -> KubeClient:
        """A client from the kubeconfig (else in-cluster); ``retries``: how often a request that failed
        to connect or timed out is sent again (None: urllib3's 3; 0 makes ``timeout`` bound the whole
        request, as kubectl's --request-timeout does). Unauthorized when the credentials cannot be loaded."""
        cfg = client.Configuration()
        try:
            if kubeconfig or context or not _in_cluster():
                config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
            else:
                config.load_incluster_config(client_configuration=cfg)
        except (config.ConfigException, OSError, TypeError, ValueError) as exc:
            raise Unauthorized(f"cannot load Kubernetes credentials: {exc}") from exc
        if retries is not None:
            cfg.retries = retries
        return cls(client.ApiClient(cfg), timeout=timeout, impersonate=impersonate)

    @property
    def identity(self) -> str:
        return str(self.api.configuration.host)

    # ---- raw requests ----

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> JSON:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        resp = self._call(method, path, params, headers, body, timeout or self.timeout)
        data = resp.read()
        return json.loads(data) if data else {}

    def _lines(self, headers: dict[str, str]) -> Any:
        """The request's header lines; impersonating, one ``Impersonate-Group`` line per group (a dict
        cannot repeat a name, urllib3's ``HTTPHeaderDict`` can, and sends each line)."""
        if self.impersonate is None:
            return headers
        lines = HTTPHeaderDict(headers)
        for name, value in self.impersonate.headers():
            lines.add(name, value)
        return lines

    def _call(
        self, method: str, path: str, params: list[tuple[str, Any]], headers: dict[str, str], body: Any, timeout: Any
    ) -> Any:
        """One HTTP exchange; non-2xx statuses become the matching DeliverError."""
        try:
            m, url, hdrs, payload, post = self.api.param_serialize(
                method, path, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"]
            )
            resp: Any = self.api.call_api(
                m, url, header_params=self._lines(hdrs), body=payload, post_params=post, _request_timeout=timeout
            )
        except ApiException as exc:
            raise _error(exc, f"{method} {path}") from None
        except (Urllib3Error, OSError) as exc:
            raise KubeError(f"{method} {path}: API server unreachable: {exc}") from exc
        except UnicodeEncodeError as exc:  # a header http.client cannot send (Latin-1 only)
            raise KubeError(f"{method} {path}: a request header is not Latin-1 text: {exc.reason}") from exc
        if not 200 <= resp.status < 300:
            data = resp.read()
            failed = ApiException(status=resp.status, reason=resp.reason)
            failed.body = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            raise _error(failed, f"{method} {path}")
        return resp

    def get(self, res: Resource, namespace: str | None, name: str) -> JSON:
        return self.request("GET", res.path(namespace, name))

    def list(
        self,
        res: Resource,
        namespace: str | None = None,
        selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> JSON:
        query = {"labelSelector": selector, "fieldSelector": field_selector, "limit": limit, "continue": continue_token}
        return self.request("GET", res.path(namespace), query=query)

    def items(
        self,
        res: Resource,
        namespace: str | None = None,
        selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[JSON]:
        return list(self.list(res, namespace, selector, field_selector).get("items") or [])

    def create(self, res: Resource, namespace: str | None, body: JSON) -> JSON:
        return self.request("POST", res.path(namespace), body=body)

    def patch(
        self, res: Resource, namespace: str | None, name: str, patch: Any, content_type: str = MERGE, sub: str = ""
    ) -> JSON:
        return self.request("PATCH", res.path(namespace, name, sub), body=patch, content_type=content_type)

    def replace(self, res: Resource, namespace: str | None, name: str, body: JSON) -> JSON:
        return self.request("PUT", res.path(namespace, name), body=body)

    def delete(self, res: Resource, namespace: str | None, name: str, propagation: str = "Background") -> None:
        try:
            self.request(
                "DELETE",
                res.path(namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
            )
        except NotFound:
            pass

    def watch(
        self, res: Resource, namespace: str | None, resource_version: str, timeout_seconds: int = 240
    ) -> Iterator[JSON]:
        """Stream watch events from ``resource_version``; raises Gone when it is too old (relist)."""
        path = res.path(namespace)
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_seconds)),
            ("allowWatchBookmarks", "true"),
        ]
        resp = self._call("GET", path, query, {"Accept": "application/json"}, None, (10, timeout_seconds + 30))
        raw = resp.response
        try:
            buffer = b""
            for chunk in raw.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        if status.get("code") == 410:
                            raise Gone(f"WATCH {path}: {status.get('message', 'too old resource version')}", status=410)
                        raise KubeError(f"WATCH {path}: {status.get('message')}", status=status.get("code"))
                    yield event
        except (Urllib3Error, OSError) as exc:
            raise KubeError(f"WATCH {path}: stream broken: {exc}") from exc
        finally:
            raw.release_conn()


def _in_cluster() -> bool:
    import os

    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )


def default_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace to work in when none is given: the kubeconfig context's, in a pod the pod's, else default."""
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        if context:
            active = next((c for c in contexts if c["name"] == context), active)
        return str((active or {}).get("context", {}).get("namespace") or "default")
    except Exception:  # no kubeconfig: in-cluster namespace, else default
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace", encoding="utf-8") as fh:
                return fh.read().strip() or "default"
        except OSError:
            return "default"


def selector_string(selector: dict[str, Any]) -> str:
    """A label selector (matchLabels + matchExpressions) as the API's query string form."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)
