"""Traffic routers: every one implements the small Router interface in ``base``."""

from .base import Router, RouterContext, router_for

__all__ = ["Router", "RouterContext", "router_for"]
