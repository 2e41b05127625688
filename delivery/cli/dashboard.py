"""``deliver dashboard``: wires the local web dashboard (``delivery.dashboard``) to the CLI's client and rules."""

from __future__ import annotations

import click

from delivery.cli.context import Globals, common, fail, note
from delivery.cli.request_rules import check_request
from delivery.dashboard import Dashboard, serve
from delivery.dashboard.server import stop


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free one).")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Show the deliveries of every namespace.")
@click.option("--read-only", is_flag=True, help="No promote/abort/retry/pause/resume buttons; requests refused.")
@common
@click.pass_obj
def dashboard(g: Globals, port: int, address: str, all_namespaces: bool, read_only: bool) -> None:
    """Serve a live web page of the deliveries (your kubeconfig's identity and permissions)."""
    board = Dashboard(g.kube(), None if all_namespaces else g.namespace, check_request, read_only=read_only)
    try:
        server = serve(board, address, port)
    except OSError as exc:
        fail(f"cannot listen on {address}:{port}: {exc}", 2)
    if address not in ("127.0.0.1", "localhost", "::1"):
        note(f"warning: listening on {address}: anyone who can reach it acts with your Kubernetes credentials")
    note(f"deliver dashboard: {server.url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop(server)
