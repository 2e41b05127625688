"""Pure planners: (spec, persisted state, observed snapshot) -> Plan. No API calls here."""

from .common import plan
from .model import DeliverySpec, DeliveryState, Observation, Phase, Plan, Strategy

__all__ = ["plan", "DeliverySpec", "DeliveryState", "Observation", "Phase", "Plan", "Strategy"]
