"""No router: traffic follows the ratio of Ready pods behind the user's Service; nothing to write."""

from __future__ import annotations

from delivery.routing.base import RouterContext
from delivery.routing.kinds import Replica
from strategies.spec import Affinity, RequestMatch


class ReplicaRouter(Replica):
    resources = ()

    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx

    def validate(self) -> None:
        return None

    def set_weight(
        self, weight: int, match: RequestMatch | None = None, mirror: int = 0, pin: Affinity | None = None
    ) -> None:
        return None

    def verify_weight(self) -> int | None:
        return None

    def reset(self) -> None:
        return None

    def verify_extras(self) -> bool:
        return False
