"""The wave's clusters: one client per stage (``connect``), how a stage is named (``where``), reading a
stage's Deployment (``read_stage``: ``StageUnreachable`` when its API server cannot be read) and the
checks of every stage against its cluster before anything is written (``preflight``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from delivery.errors import DeliverError, KubeError, NotFound
from delivery.kube.client import DEPLOYMENTS, Kube, KubeClient
from delivery.wave.file import Change, ClusterRef, Stage, Wave, stage_problems


def where(stage: Stage, ref: ClusterRef) -> str:
    """How a stage is shown: ``context@host:port namespace/app``."""
    host = ref.server.split("://", 1)[-1].split("/", 1)[0]
    return f"{ref.context or 'in-cluster'}@{host} {stage.namespace}/{stage.app}"


Connector = Callable[[str | None, str | None], Kube]  # (kubeconfig, context) -> a client


def connect(refs: Mapping[str, ClusterRef], connector: Connector = KubeClient.connect) -> dict[str, Kube]:
    """One client per distinct (kubeconfig, context); stages on the same cluster share it. ``connector``
    makes each (the CLI's: with its --as, --as-group and --request-timeout)."""
    made: dict[tuple[str, str], Kube] = {}
    out: dict[str, Kube] = {}
    for name, ref in refs.items():
        key = (ref.kubeconfig, ref.context)
        if key not in made:
            made[key] = connector(ref.kubeconfig or None, ref.context or None)
        out[name] = made[key]
    return out


class StageUnreachable(DeliverError):
    """A stage's API server could not be read (exit 4); nothing further is changed."""

    def __init__(self, stage: str, error: KubeError) -> None:
        super().__init__(f"stage {stage}: {error}")
        self.stage = stage
        self.error = error


def read_stage(kube: Kube, stage: Stage) -> dict[str, Any] | None:
    """The stage's Deployment, None if it does not exist; StageUnreachable on API errors."""
    try:
        return kube.get(DEPLOYMENTS, stage.namespace, stage.app)
    except NotFound:
        return None
    except KubeError as exc:
        raise StageUnreachable(stage.name, exc) from exc


def preflight(wave: Wave, change: Change, kubes: Mapping[str, Kube]) -> list[str]:
    """Every reason the wave cannot run, from each stage's Deployment (reads only).

    StageUnreachable when a cluster cannot be read: the caller exits 4 before anything is touched.
    """
    problems: list[str] = []
    readers: dict[str, str] = {}  # Deployment uid -> the stage that reads it
    for s in wave.stages:
        deployment = read_stage(kubes[s.name], s)
        if deployment is None:
            problems.append(f"stage {s.name}: deployment {s.namespace}/{s.app} not found")
            continue
        # One cluster under two names (a DNS alias, a load balancer: the URLs differ) is found here:
        # a uid names one object of one cluster.
        uid = str((deployment.get("metadata") or {}).get("uid") or "")
        if uid and uid in readers:
            problems.append(
                f"stage {s.name}: deployment {s.namespace}/{s.app} is the very object stage {readers[uid]} reads "
                f"(uid {uid}): the two stages are one cluster under two names (a stage twice)"
            )
        readers.setdefault(uid, s.name)
        problems += [f"stage {s.name}: {p}" for p in stage_problems(s, change, deployment)]
    return problems
