"""The wave's marker: what a wave writes on each stage's Deployment beside the change.

The annotation ``wave.deliver.dev/stage`` (not ``deliver.dev/``: the controller does not read it)
holds the wave's id, the revision it applied, the stable revision before it (a rollback goes back
there) and when the change was applied, passed and rolled back. It is the wave's only state: a run
finds where the wave stands from the markers and deliver's records, on the clusters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MARKER = "wave.deliver.dev/stage"


@dataclass(frozen=True)
class Marker:
    """What the wave wrote on a stage's Deployment (annotation ``wave.deliver.dev/stage``)."""

    id: str
    wave: str = ""
    stage: str = ""
    revision: str = ""  # the revision the wave applied
    previous: str = ""  # the stable revision before it (rollback goes back there)
    applied_at: float = 0.0
    passed_at: float = 0.0
    rolled_back_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "wave": self.wave,
                "stage": self.stage,
                "revision": self.revision,
                "previous": self.previous,
                "appliedAt": round(self.applied_at, 3),
                "passedAt": round(self.passed_at, 3),
                "rolledBackAt": round(self.rolled_back_at, 3),
            },
            separators=(",", ":"),
        )


def read_marker(deployment: dict[str, Any]) -> Marker | None:
    raw = ((deployment.get("metadata") or {}).get("annotations") or {}).get(MARKER)
    if not raw:
        return None
    try:
        d = json.loads(raw)
        return Marker(
            id=str(d["id"]),
            wave=str(d.get("wave", "")),
            stage=str(d.get("stage", "")),
            revision=str(d.get("revision", "")),
            previous=str(d.get("previous", "")),
            applied_at=float(d.get("appliedAt") or 0),
            passed_at=float(d.get("passedAt") or 0),
            rolled_back_at=float(d.get("rolledBackAt") or 0),
        )
    except (ValueError, KeyError, TypeError):
        return None
