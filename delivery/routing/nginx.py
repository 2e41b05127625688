"""NGINX Ingress canary: a generated canary Ingress beside the user's Ingress.

ingress-nginx splits traffic between an Ingress and a second Ingress for the same host/path that
carries ``nginx.ingress.kubernetes.io/canary: "true"`` and ``canary-weight: "<w>"``. deliver
never edits the user's Ingress NAME: it generates ``NAME-canary`` from it, with

* the same ingressClassName, TLS and annotations (less kubectl's last-applied copy and any
  ``canary*`` annotation of the user's),
* only the paths (and default backend) whose backend is the stable Service, each pointing at the
  canary Service on the same port instead,
* the two canary annotations, deliver's owner label, and an ownerReference to the Deployment (so
  it is garbage-collected with it).

With ``deliver.dev/match`` the canary Ingress also carries ``canary-by-header`` (and
``canary-by-header-value``) or ``canary-by-cookie`` (ingress-nginx routes a request whose cookie
value is ``always``), so matched requests reach the canary at any weight; without, those
annotations are removed.

``set_weight`` creates it, or changes its weight (and re-syncs its spec if the user's Ingress
changed) in one merge patch; ``reset`` writes weight 0 in one patch. A canary Ingress of the same
name that deliver did not generate is never touched.
"""

from __future__ import annotations

import copy
from typing import Any

from delivery.errors import Conflict, KubeError, NotFound, RoutingError
from delivery.kube.client import DEPLOYMENTS, Resource
from delivery.routing.base import RouterContext
from delivery.routing.kinds import Capability, Nginx, able, either
from delivery.routing.patches import JSON, clamp, read_route
from strategies.spec import Affinity, RequestMatch

INGRESSES = Resource("networking.k8s.io", "v1", "ingresses")

CANARY = "nginx.ingress.kubernetes.io/canary"
CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
CANARY_PREFIX = "nginx.ingress.kubernetes.io/canary"
CANARY_BY_HEADER = "nginx.ingress.kubernetes.io/canary-by-header"
CANARY_BY_HEADER_VALUE = "nginx.ingress.kubernetes.io/canary-by-header-value"
CANARY_BY_COOKIE = "nginx.ingress.kubernetes.io/canary-by-cookie"
MATCH_KEYS = (CANARY_BY_HEADER, CANARY_BY_HEADER_VALUE, CANARY_BY_COOKIE)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
OWNER_LABEL = "deliver.dev/owner"


class NginxRouter(Nginx):
    what = "Ingress"
    resources = (INGRESSES,)

    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx

    @property
    def canary_name(self) -> str:
        return self.canary_ingress(self.ctx.route)

    # ---- reading ----

    def _load(self) -> JSON:
        c = self.ctx
        ingress = read_route(c.kube, INGRESSES, c.namespace, c.route, self.what)
        if str(((ingress.get("metadata") or {}).get("annotations") or {}).get(CANARY, "")).lower() == "true":
            raise RoutingError(
                f"Ingress {c.namespace}/{c.route} is itself a canary Ingress; "
                "name the main Ingress in deliver.dev/router"
            )
        return ingress

    def _canary(self) -> JSON | None:
        c = self.ctx
        try:
            return c.kube.get(INGRESSES, c.namespace, self.canary_name)
        except NotFound:
            return None
        except KubeError as exc:
            raise RoutingError(f"cannot read Ingress {c.namespace}/{self.canary_name}: {exc}") from None

    def _is_stable(self, backend: JSON | None) -> bool:
        return ((backend or {}).get("service") or {}).get("name") == self.ctx.stable_service

    def _to_canary(self, backend: JSON) -> JSON:
        out = copy.deepcopy(backend)
        out["service"]["name"] = self.ctx.canary_service
        return out

    def canary_spec(self, ingress: JSON) -> JSON:
        """The user's spec narrowed to the stable Service's paths, pointed at the canary Service."""
        c = self.ctx
        spec = copy.deepcopy(ingress.get("spec") or {})
        out: JSON = {k: v for k, v in spec.items() if k not in ("rules", "defaultBackend")}
        found = False
        if self._is_stable(spec.get("defaultBackend")):
            out["defaultBackend"] = self._to_canary(spec["defaultBackend"])
            found = True
        rules = []
        for rule in spec.get("rules") or []:
            paths = [
                dict(p, backend=self._to_canary(p["backend"]))
                for p in ((rule.get("http") or {}).get("paths") or [])
                if self._is_stable(p.get("backend"))
            ]
            if paths:
                rules.append(dict(rule, http={"paths": paths}))
                found = True
        if rules:
            out["rules"] = rules
        if not found:
            raise RoutingError(
                f"Ingress {c.namespace}/{c.route} has no path (or default backend) for Service {c.stable_service}"
            )
        return out

    def _owner(self) -> JSON:
        c = self.ctx
        try:
            d = c.kube.get(DEPLOYMENTS, c.namespace, c.deployment)
        except KubeError as exc:
            raise RoutingError(f"cannot read Deployment {c.namespace}/{c.deployment}: {exc}") from None
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": c.deployment,
            "uid": d["metadata"]["uid"],
            "controller": False,
            "blockOwnerDeletion": False,
        }

    def _ours(self, canary: JSON) -> bool:
        return ((canary.get("metadata") or {}).get("labels") or {}).get(OWNER_LABEL) == self.ctx.deployment

    @staticmethod
    def match_annotations(match: RequestMatch | None) -> dict[str, str | None]:
        """The canary-by-* annotations for ``match`` (None values: to be removed)."""
        out: dict[str, str | None] = dict.fromkeys(MATCH_KEYS)
        if match is not None and match.kind == "header":
            out[CANARY_BY_HEADER] = match.name
            out[CANARY_BY_HEADER_VALUE] = match.value
        elif match is not None:
            out[CANARY_BY_COOKIE] = match.name
        return out

    def canary_body(self, ingress: JSON, weight: int, owner: JSON, match: RequestMatch | None = None) -> JSON:
        c = self.ctx
        meta = ingress.get("metadata") or {}
        annotations = {
            k: v
            for k, v in (meta.get("annotations") or {}).items()
            if k != LAST_APPLIED and not k.startswith(CANARY_PREFIX)
        }
        annotations[CANARY] = "true"
        annotations[CANARY_WEIGHT] = str(clamp(weight))
        annotations.update({k: v for k, v in self.match_annotations(match).items() if v is not None})
        labels = dict(meta.get("labels") or {})
        labels[OWNER_LABEL] = c.deployment
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": self.canary_name,
                "namespace": c.namespace,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [owner],
            },
            "spec": self.canary_spec(ingress),
        }

    def weight_patch(self, ingress: JSON, canary: JSON, weight: int, match: RequestMatch | None = None) -> JSON | None:
        """The one merge patch taking ``canary`` to ``weight`` and ``match`` (and to the user's current
        spec); None: no-op."""
        want = self.canary_spec(ingress)
        have = canary.get("spec") or {}
        annotations = (canary.get("metadata") or {}).get("annotations") or {}
        wanted: dict[str, str | None] = {}
        if annotations.get(CANARY) != "true" or annotations.get(CANARY_WEIGHT) != str(clamp(weight)):
            wanted = {CANARY: "true", CANARY_WEIGHT: str(clamp(weight))}
        wanted.update({k: v for k, v in self.match_annotations(match).items() if annotations.get(k) != v})
        patch: JSON = {}
        if wanted:
            patch["metadata"] = {"annotations": wanted}
        if want != have:
            spec_patch: dict[str, Any] = dict(want)
            for key in have:
                if key not in want:
                    spec_patch[key] = None  # merge patch: remove what the user's Ingress no longer has
            patch["spec"] = spec_patch
        if not patch:
            return None
        patch.setdefault("metadata", {})["resourceVersion"] = canary["metadata"]["resourceVersion"]
        return patch

    # ---- Router ----

    def validate(self) -> None:
        self.canary_spec(self._load())
        canary = self._canary()
        if canary is not None and not self._ours(canary):
            raise RoutingError(
                f"Ingress {self.ctx.namespace}/{self.canary_name} exists and was not "
                f"generated by deliver for {self.ctx.deployment}; not touching it"
            )

    def verify_weight(self) -> int | None:
        self.validate()
        canary = self._canary()
        if canary is None:
            return 0
        annotations = (canary.get("metadata") or {}).get("annotations") or {}
        if str(annotations.get(CANARY, "")).lower() != "true":
            return 0
        try:
            return clamp(int(str(annotations.get(CANARY_WEIGHT, "0")).strip() or 0))
        except ValueError:
            return 0

    def set_weight(
        self, weight: int, match: RequestMatch | None = None, mirror: int = 0, pin: Affinity | None = None
    ) -> None:
        c = self.ctx
        if pin is not None:
            raise RoutingError(
                f"deliver has no session affinity through {self.what} (needs {either(able(Capability.PIN))})"
            )
        if mirror:
            raise RoutingError(
                "deliver does not mirror through ingress-nginx "
                f"(a `mirror` step needs {either(able(Capability.MIRROR))})"
            )
        for _ in range(3):
            ingress = self._load()
            self.canary_spec(ingress)  # the user's Ingress must route to the stable Service
            canary = self._canary()
            if canary is None:
                if clamp(weight) == 0 and match is None:
                    return  # no canary Ingress: nothing goes to the canary already
                try:
                    c.kube.create(INGRESSES, c.namespace, self.canary_body(ingress, weight, self._owner(), match))
                    return
                except Conflict:
                    continue  # created meanwhile: patch it instead
                except KubeError as exc:
                    raise RoutingError(f"cannot create Ingress {c.namespace}/{self.canary_name}: {exc}") from None
            if not self._ours(canary):
                raise RoutingError(
                    f"Ingress {c.namespace}/{self.canary_name} exists and was not "
                    f"generated by deliver for {c.deployment}; not touching it"
                )
            patch = self.weight_patch(ingress, canary, weight, match)
            if patch is None:
                return
            try:
                c.kube.patch(INGRESSES, c.namespace, self.canary_name, patch)
                return
            except (Conflict, NotFound):
                continue
            except KubeError as exc:
                raise RoutingError(f"cannot patch Ingress {c.namespace}/{self.canary_name}: {exc}") from None
        raise RoutingError(f"Ingress {c.namespace}/{self.canary_name} kept changing while its weight was set")

    def reset(self) -> None:
        """Weight 0 on the canary Ingress in one patch; works even if the user's Ingress is gone."""
        c = self.ctx
        canary = self._canary()
        if canary is None:
            return
        if not self._ours(canary):
            raise RoutingError(
                f"Ingress {c.namespace}/{self.canary_name} exists and was not "
                f"generated by deliver for {c.deployment}; not touching it"
            )
        annotations = (canary.get("metadata") or {}).get("annotations") or {}
        if annotations.get(CANARY_WEIGHT) == "0" and not any(k in annotations for k in MATCH_KEYS):
            return
        reset: dict[str, str | None] = {CANARY_WEIGHT: "0", **dict.fromkeys(k for k in MATCH_KEYS if k in annotations)}
        try:
            c.kube.patch(INGRESSES, c.namespace, self.canary_name, {"metadata": {"annotations": reset}})
        except NotFound:
            return
        except KubeError as exc:
            raise RoutingError(f"cannot patch Ingress {c.namespace}/{self.canary_name}: {exc}") from None

    def verify_extras(self) -> bool:
        canary = self._canary()
        annotations = ((canary or {}).get("metadata") or {}).get("annotations") or {}
        return canary is not None and self._ours(canary) and any(k in annotations for k in MATCH_KEYS)
