"""Pure planners: (spec, persisted state, observed snapshot) -> Plan. No API calls here.

Imports run one way: model <- steps <- per-strategy planners (canary, bluegreen, rolling, recreate)
<- plan. Nothing here imports ``delivery``.
"""

from .model import DeliverySpec, DeliveryState, Observation, Phase, Plan, Strategy
from .plan import plan

__all__ = ["plan", "DeliverySpec", "DeliveryState", "Observation", "Phase", "Plan", "Strategy"]
