"""The wave file of ``deliver wave``: stages in order, each a cluster, a namespace and an app. Pure.

A wave ships one change (an image, or a manifest's pod template: ``Change``) to several clusters,
one stage after the other, each cluster's own deliver controller doing the delivery. This module
reads the file (``parse``: checked against ``delivery.wave.schema``, then a stage twice), reads the
kubeconfigs the stages name (``resolve_clusters``: YAML only, no connection) and turns
``--image``/``--manifest`` into a ``Change``. Every problem is collected and raised at once as
``WaveFileError``: nothing is touched before the whole wave is valid.

    wave: web-release
    on-failure: rollback          # rollback | hold (default rollback)
    timeout: 15m                  # per stage (default 15m)
    soak: 0s                      # after each stage's success (default 0s)
    stages:
      - name: staging
        context: staging          # kubeconfig context (default: the kubeconfig's current one)
        kubeconfig: ~/.kube/staging.yaml   # default: --kubeconfig / $KUBECONFIG / ~/.kube/config
        namespace: shop
        app: web
        overrides: {steps: "50,100", interval: 30s}   # deliver.dev/* keys, written with the change
        soak: 5m
      - name: eu-1
        ...
      - parallel:                 # these stages run at once; the wave waits for all of them
          - {name: us-1, context: us-1, namespace: shop, app: web}
          - {name: us-2, context: us-2, namespace: shop, app: web}
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from delivery import spec as specmod
from delivery import templates, yamlfile
from delivery.errors import WaveFileError
from delivery.gate import Pin, manifest_pin
from delivery.wave import schema
from delivery.wave.schema import DEFAULT_TIMEOUT

_DNS1123 = re.compile(schema.LABEL)  # a container's name in --image NAME=IMAGE
_TARGET = ("kubeconfig", "context", "namespace", "app")  # a stage's Deployment, wherever it is


class OnFailure(Enum):
    """What happens to the stages before the one that failed."""

    ROLLBACK = "rollback"  # their previous template is written back (deliver delivers it as a change)
    HOLD = "hold"  # they keep the new version; the wave stops


@dataclass(frozen=True)
class Stage:
    name: str
    namespace: str
    app: str
    context: str = ""  # "" = the kubeconfig's current context
    kubeconfig: str = ""  # "" = the default kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config)
    overrides: tuple[tuple[str, str], ...] = ()  # (deliver.dev/KEY, value), written with the change
    soak: float = 0.0
    timeout: float = DEFAULT_TIMEOUT

    @property
    def where(self) -> str:
        cluster = self.context or (Path(self.kubeconfig).name if self.kubeconfig else "current context")
        return f"{cluster} {self.namespace}/{self.app}"


@dataclass(frozen=True)
class Wave:
    """A parsed wave: ``groups`` run in order; the stages of one group run at once."""

    name: str
    groups: tuple[tuple[Stage, ...], ...]
    on_failure: OnFailure = OnFailure.ROLLBACK
    source: str = ""  # the file it came from, for messages

    @property
    def stages(self) -> tuple[Stage, ...]:
        return tuple(s for g in self.groups for s in g)

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def group_of(self, name: str) -> int:
        return next(i for i, g in enumerate(self.groups) if any(s.name == name for s in g))

    def canonical(self) -> dict[str, Any]:
        """What identifies the wave (with the change: its id). Paths and order included."""
        return {
            "wave": self.name,
            "onFailure": self.on_failure.value,
            "groups": [
                [
                    {
                        "name": s.name,
                        "context": s.context,
                        "kubeconfig": s.kubeconfig,
                        "namespace": s.namespace,
                        "app": s.app,
                        "overrides": dict(s.overrides),
                        "soak": s.soak,
                    }
                    for s in g
                ]
                for g in self.groups
            ],
        }


# ---------------------------------------------------------------------------- the change


@dataclass(frozen=True)
class Change:
    """What the wave ships: container images (``images``) or a manifest's pod templates (``manifest``)."""

    images: tuple[tuple[str, str], ...] = ()  # (container name, "" = the only container; image)
    manifest: str = ""  # the text of the manifest file
    manifest_name: str = ""

    def describe(self) -> str:
        if self.manifest:
            return f"manifest {self.manifest_name or '-'}"
        return ", ".join(f"{c + '=' if c else ''}{i}" for c, i in self.images)

    def canonical(self) -> dict[str, Any]:
        if self.manifest:
            docs = [d for d in yamlfile.load_all(self.manifest) if isinstance(d, dict)]
            return {"manifest": docs}
        return {"images": [list(p) for p in self.images]}

    def template_for(self, stage: Stage, current: dict[str, Any]) -> dict[str, Any]:
        """The pod template ``stage`` gets: ``current`` with the change applied. ValueError if it does not fit."""
        if self.manifest:
            template = _manifest_deployment(self.manifest, stage)
            return copy.deepcopy(template)
        new = templates.without_hash(current)
        containers = (new.get("spec") or {}).get("containers") or []
        for name, image in self.images:
            if not name:
                if len(containers) != 1:
                    names = ", ".join(str(c.get("name")) for c in containers)
                    raise ValueError(f"the pod has {len(containers)} containers ({names}): say which, NAME=IMAGE")
                containers[0]["image"] = image
                continue
            found = [c for c in containers if c.get("name") == name]
            if not found:
                names = ", ".join(str(c.get("name")) for c in containers)
                raise ValueError(f"no container named {name!r} (containers: {names})")
            found[0]["image"] = image
        return new

    def pin_for(self, stage: Stage, current: dict[str, Any]) -> Pin:
        """How the gate finds this change on ``stage`` (in the template or deliver's record)."""
        if self.manifest:
            doc = {
                "kind": "Deployment",
                "metadata": {"name": stage.app},
                "spec": {"template": self.template_for(stage, current)},
            }
            return manifest_pin(yaml.safe_dump(doc), stage.app)
        return Pin(revision=templates.revision(self.template_for(stage, current)))


def _manifest_deployment(text: str, stage: Stage) -> dict[str, Any]:
    """The pod template of ``stage.app``'s Deployment in the manifest (one for its namespace first)."""
    try:
        docs = [d for d in yamlfile.load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError as exc:
        raise ValueError(f"the manifest is not YAML: {exc}") from None
    flat: list[dict[str, Any]] = []
    for d in docs:
        flat += [i for i in d.get("items") or [] if isinstance(i, dict)] if d.get("kind") == "List" else [d]
    named = [d for d in flat if d.get("kind") == "Deployment" and (d.get("metadata") or {}).get("name") == stage.app]
    here = [d for d in named if (d.get("metadata") or {}).get("namespace") in (None, "", stage.namespace)]
    if not here:
        raise ValueError(f"the manifest has no Deployment {stage.app} for namespace {stage.namespace}")
    template = (here[0].get("spec") or {}).get("template")
    if not isinstance(template, dict) or not ((template.get("spec") or {}).get("containers")):
        raise ValueError(f"Deployment {stage.app} in the manifest has no pod template with containers")
    return template


_IMAGE_REF = re.compile(r"^[^\s=]+$")


def parse_image(value: str) -> tuple[str, str]:
    """``NAME=IMAGE`` or ``IMAGE`` (the pod's only container) → (name, image). ValueError if malformed."""
    name, sep, image = value.partition("=")
    if not sep:
        name, image = "", value
    if sep and not _DNS1123.match(name):
        raise ValueError(f"{name!r} is not a container name")
    if not _IMAGE_REF.match(image):
        raise ValueError(f"{image!r} is not an image reference")
    return name, image


def wave_id(wave: Wave, change: Change) -> str:
    """A short id of (wave, change): the same command run again finds its own stages by it."""
    text = json.dumps({"wave": wave.canonical(), "change": change.canonical()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------- parsing


def parse(text: str, source: str = "wave file", base: Path | None = None) -> Wave:
    """The wave in ``text``; raises WaveFileError listing every problem. ``base``: for relative kubeconfigs."""
    try:
        raw = yamlfile.load(text)
    except yaml.YAMLError as exc:
        raise WaveFileError(source, [f"not valid YAML: {exc}"]) from None
    valid, problems = schema.problems(raw)
    problems += _twice(raw, base)
    if valid is None or problems:
        raise WaveFileError(source, problems)
    soak, timeout = valid.soak or 0.0, DEFAULT_TIMEOUT if valid.timeout is None else valid.timeout

    def stage(s: schema.StageSchema) -> Stage:
        return Stage(
            name=s.name,
            namespace=s.namespace,
            app=s.app,
            context=s.context or "",
            kubeconfig=_kubeconfig(s.kubeconfig or "", base),
            overrides=tuple(sorted((s.overrides or {}).items())),
            soak=soak if s.soak is None else s.soak,
            timeout=timeout if s.timeout is None else s.timeout,
        )

    groups = tuple(
        tuple(stage(s) for s in e.parallel) if isinstance(e, schema.ParallelSchema) else (stage(e),)
        for e in valid.stages
    )
    return Wave(valid.wave, groups, OnFailure(valid.on_failure), source)


def _kubeconfig(value: str, base: Path | None) -> str:
    """A stage's kubeconfig as a path: ``~`` expanded, relative to ``base`` (the wave file's directory)."""
    if not value:
        return ""
    path = Path(os.path.expanduser(value))
    return str(base / path if not path.is_absolute() and base is not None else path)


def _twice(raw: Any, base: Path | None) -> list[str]:
    """A stage twice: one name, or one (kubeconfig, context, namespace, app). Read from the YAML as it
    is, so that it is said with the file's other problems; fields of the wrong type are skipped (said
    by the schema)."""
    entries = raw.get("stages") if isinstance(raw, dict) else None
    stages: list[dict[Any, Any]] = []
    for e in entries if isinstance(entries, list) else []:
        group = e.get("parallel") if isinstance(e, dict) and "parallel" in e else [e]
        stages += [s for s in group if isinstance(s, dict)] if isinstance(group, list) else []
    problems: list[str] = []
    names = Counter(s.get("name") for s in stages if isinstance(s.get("name"), str) and s.get("name"))
    problems += [f"stage {n}: named {k} times: a stage appears once in a wave" for n, k in names.items() if k > 1]
    targets: dict[tuple[str, str, str, str], str] = {}
    for s in stages:
        name, kubeconfig, context, namespace, app = (s.get(k) or "" for k in ("name", *_TARGET))
        if not all(isinstance(v, str) for v in (name, kubeconfig, context, namespace, app)):
            continue
        key = (_kubeconfig(kubeconfig.strip(), base), context.strip(), namespace, app)
        if key in targets and name != targets[key]:
            problems.append(
                f"stage {name}: the same cluster, namespace and app as stage {targets[key]} (a stage twice)"
            )
        targets.setdefault(key, name)
    return problems


def load(path: str) -> Wave:
    """Read and parse a wave file; an unreadable file is a WaveFileError too."""
    try:
        text = yamlfile.read(path)
    except OSError as exc:
        raise WaveFileError(path, [f"cannot read it: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        raise WaveFileError(path, [f"not read: {exc}"]) from None
    return parse(text, path, Path(path).resolve().parent)


# ---------------------------------------------------------------------------- kubeconfigs, offline


@dataclass(frozen=True)
class ClusterRef:
    """Where a stage's API server is, read from its kubeconfig (no connection)."""

    kubeconfig: str  # the file ("" = in-cluster)
    context: str  # the context used ("" = in-cluster)
    server: str


def default_kubeconfig(flag: str | None) -> str:
    """The kubeconfig a stage without one uses: --kubeconfig, else $KUBECONFIG's first file, else ~/.kube/config."""
    if flag:
        return flag
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return first or os.path.expanduser("~/.kube/config")


_DEFAULT_PORTS = {"https": 443, "http": 80}
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}  # one machine's API server, however a kubeconfig names it


def server_identity(url: str) -> str:
    """One spelling of an API server's URL: scheme and host lower-case, the default port written
    out, no trailing slash; ``localhost``, ``127.0.0.1`` and ``[::1]`` are one host. Two stages whose
    servers have the same identity are on one cluster. (Two different names of one server, a DNS
    alias or a load balancer, still look like two: the wave cannot tell offline.)"""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:  # a port that is not a number: compared as written
        return url.strip().rstrip("/").lower()
    if host in _LOOPBACK:
        host = "127.0.0.1"
    port = port or _DEFAULT_PORTS.get(scheme, 0)
    return f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"


def resolve_clusters(wave: Wave, default: str) -> dict[str, ClusterRef]:
    """Each stage's kubeconfig, context and server, from the kubeconfig files only.

    Raises WaveFileError for a missing kubeconfig, an unknown context, or two stages that are the
    same app in the same namespace of the same API server.
    """
    problems: list[str] = []
    out: dict[str, ClusterRef] = {}
    files: dict[str, dict[str, Any] | str] = {}
    for s in wave.stages:
        path = s.kubeconfig or default
        if path not in files:
            try:
                loaded = yamlfile.load(yamlfile.read(path))
                files[path] = loaded if isinstance(loaded, dict) else f"{path} is not a kubeconfig"
            except (OSError, yaml.YAMLError) as exc:
                files[path] = f"cannot read kubeconfig {path}: {getattr(exc, 'strerror', None) or exc}"
        cfg = files[path]
        if isinstance(cfg, str):
            problems.append(f"stage {s.name}: {cfg}")
            continue
        contexts = {
            str(c.get("name")): c.get("context") or {} for c in cfg.get("contexts") or [] if isinstance(c, dict)
        }
        context = s.context or str(cfg.get("current-context") or "")
        if context not in contexts:
            known = ", ".join(sorted(contexts)) or "none"
            what = f"unknown context {context!r}" if context else "no context given and no current-context"
            problems.append(f"stage {s.name}: {what} in {path} (contexts: {known})")
            continue
        cluster_name = str(contexts[context].get("cluster", ""))
        clusters = {
            str(c.get("name")): c.get("cluster") or {} for c in cfg.get("clusters") or [] if isinstance(c, dict)
        }
        server = str((clusters.get(cluster_name) or {}).get("server", ""))
        if not server:
            problems.append(f"stage {s.name}: context {context!r} names cluster {cluster_name!r}, not in {path}")
            continue
        out[s.name] = ClusterRef(path, context, server)
    seen: dict[tuple[str, str, str], str] = {}
    for s in wave.stages:
        ref = out.get(s.name)
        if ref is None:
            continue
        key = (server_identity(ref.server), s.namespace, s.app)
        if key in seen:
            problems.append(
                f"stage {s.name}: {s.namespace}/{s.app} on {ref.server} is stage {seen[key]} already (a stage twice)"
            )
        seen.setdefault(key, s.name)
    if problems:
        raise WaveFileError(wave.source, problems)
    return out


def stage_problems(stage: Stage, change: Change, deployment: dict[str, Any]) -> list[str]:
    """Why ``stage`` cannot take ``change`` on this Deployment (empty: it can). Pure."""
    meta = deployment.get("metadata") or {}
    name = f"{meta.get('namespace', stage.namespace)}/{meta.get('name', stage.app)}"
    if not specmod.has_strategy(deployment):
        return [specmod.not_managed(name)]
    out: list[str] = []
    with_overrides = copy.deepcopy(deployment)
    annotations = with_overrides.setdefault("metadata", {}).setdefault("annotations", {})
    annotations.update(dict(stage.overrides))
    for err in specmod.problems(with_overrides):
        origin = " (from the stage's overrides)" if err.key in dict(stage.overrides) else ""
        out.append(f"{err.key}: {err.problem}{origin}")
    try:
        change.template_for(stage, (deployment.get("spec") or {}).get("template") or {})
    except ValueError as exc:
        out.append(str(exc))
    return out
