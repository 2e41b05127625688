"""``deliver dashboard``: a local web page of the deliveries, live, with the operator's buttons.

Three modules, imports one way (``server`` → ``render`` → ``data``):

    data    what the page shows, read from the API in one pass (``collect`` → ``Snapshot``)
    render  the server-rendered HTML: the list, one delivery in detail, the evidence charts
    server  the HTTP server: the page, server-sent events, the operator requests (``Dashboard``)

The CLI (``delivery/cli/dashboard.py``) only wires: it hands in the client and the CLI's own request
rules (``check_request``), so the buttons refuse exactly what the verbs refuse.
"""

from __future__ import annotations

from delivery.dashboard.server import Dashboard, serve

__all__ = ["Dashboard", "serve"]
