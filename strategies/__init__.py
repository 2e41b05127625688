"""Pure planners: (spec, persisted state, observed snapshot) -> Plan. No API calls here.

Imports run one way: the domain model (actions <- observation, record <- evidence, spec <- codec)
<- steps <- per-strategy planners (canary, bluegreen, rolling, recreate) <- plan. Nothing here
imports ``delivery``.
"""

from .actions import Plan
from .observation import Observation
from .plan import plan
from .record import DeliveryState, Phase
from .spec import DeliverySpec, Strategy

__all__ = ["plan", "DeliverySpec", "DeliveryState", "Observation", "Phase", "Plan", "Strategy"]
