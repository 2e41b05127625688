"""Argo CD's Lua contract, run here: the health check and resource actions deliver ships for Argo CD.

``python -m e2e.argocd`` renders ``gitops/argocd/argocd-cm.yaml`` (what users merge into their
``argocd-cm`` ConfigMap) from the Lua sources in ``gitops/argocd/`` (a line ``-- #include json.lua``
inlines the shared JSON reader). The functions below run the scripts *from that rendered file*
under a real Lua 5.1 interpreter (lupa; Argo CD embeds gopher-lua, a Lua 5.1) the way Argo CD
does: the object as the global table ``obj``; a health script returns ``hs`` with ``status`` and
``message``; ``discovery.lua`` returns action name -> ``{disabled = bool}``; an action returns the
modified ``obj``. Used by tests/test_argocd.py (recorded objects) and e2e/test_gitops.py (live ones).
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from e2e.cluster import REPO_ROOT

SOURCES = REPO_ROOT / "gitops" / "argocd"
RENDERED = SOURCES / "argocd-cm.yaml"
HEALTH_KEY = "resource.customizations.health.apps_Deployment"
ACTIONS_KEY = "resource.customizations.actions.apps_Deployment"
VERBS = ("promote", "abort", "retry")
HEALTH_STATUSES = {"Healthy", "Progressing", "Suspended", "Degraded", "Missing", "Unknown"}


def _source(name: str) -> str:
    lines = []
    for line in (SOURCES / name).read_text().splitlines():
        if line.strip().startswith("-- #include "):
            lines += _source(line.strip().removeprefix("-- #include ")).splitlines()
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _block(text: str, indent: int) -> str:
    pad = " " * indent
    return "".join(pad + line + "\n" if line else "\n" for line in text.splitlines())


def render() -> str:
    """The argocd-cm.yaml text: the health check and the actions, each script self-contained."""
    actions = "discovery.lua: |\n" + _block(_source("actions/discovery.lua"), 2) + "definitions:\n"
    for verb in VERBS:
        actions += f"  - name: {verb}\n    action.lua: |\n" + _block(_source(f"actions/{verb}.lua"), 6)
    return (
        "# deliver's Argo CD customizations for apps/Deployment: merge into your argocd-cm ConfigMap\n"
        "# (docs/gitops.md). Rendered by `python -m e2e.argocd` from gitops/argocd/*.lua: edit those.\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: argocd-cm\n"
        "  namespace: argocd\n"
        "  labels:\n"
        "    app.kubernetes.io/name: argocd-cm\n"
        "    app.kubernetes.io/part-of: argocd\n"
        "data:\n"
        f"  {HEALTH_KEY}: |\n" + _block(_source("health.lua"), 4) + f"  {ACTIONS_KEY}: |\n" + _block(actions, 4)
    )


def scripts() -> dict[str, str]:
    """The scripts as Argo CD reads them from the rendered file: health, discovery and each verb."""
    data = yaml.safe_load(RENDERED.read_text())["data"]
    actions = yaml.safe_load(data[ACTIONS_KEY])
    found = {"health": data[HEALTH_KEY], "discovery": actions["discovery.lua"]}
    for definition in actions["definitions"]:
        found[definition["name"]] = definition["action.lua"]
    return found


class ArgoLua:
    """The scripts of gitops/argocd/argocd-cm.yaml in a Lua 5.1 without io, debug or file loading."""

    def __init__(self) -> None:
        from lupa import lua51

        self.scripts = scripts()
        self._runtime = lua51.LuaRuntime(unpack_returned_tuples=False, register_eval=False)
        g = self._runtime.globals()
        for name in ("io", "debug", "dofile", "loadfile", "load", "loadstring"):
            g[name] = None

    def _to_lua(self, value: Any) -> Any:
        if isinstance(value, dict):
            return self._runtime.table_from({k: self._to_lua(v) for k, v in value.items() if v is not None})
        if isinstance(value, list):
            return self._runtime.table_from([self._to_lua(v) for v in value])
        return value

    def _from_lua(self, value: Any) -> Any:
        from lupa import lua51

        if lua51.lua_type(value) != "table":
            return value
        items = {k: self._from_lua(v) for k, v in value.items()}
        if items and all(isinstance(k, int) for k in items) and sorted(items) == list(range(1, len(items) + 1)):
            return [items[i] for i in range(1, len(items) + 1)]
        return items

    def _run(self, name: str, obj: dict[str, Any]) -> Any:
        self._runtime.globals()["obj"] = self._to_lua(obj)
        return self._from_lua(self._runtime.execute(self.scripts[name]))

    def health(self, obj: dict[str, Any]) -> tuple[str, str]:
        """(hs.status, hs.message) of the health script for this Deployment."""
        hs = self._run("health", obj)
        status, message = hs.get("status"), hs.get("message") or ""
        if status not in HEALTH_STATUSES:
            raise AssertionError(f"health.lua returned status {status!r}: {hs}")
        return str(status), str(message)

    def enabled_actions(self, obj: dict[str, Any]) -> set[str]:
        """The actions discovery.lua offers (not disabled) for this Deployment."""
        found = self._run("discovery", obj)
        return {name for name, flags in found.items() if not flags.get("disabled")}

    def act(self, verb: str, obj: dict[str, Any]) -> dict[str, Any]:
        """The object the action returns (what Argo CD patches onto the cluster)."""
        result = self._run(verb, obj)
        assert isinstance(result, dict), result
        return result


def main() -> int:
    RENDERED.write_text(render())
    print(f"wrote {RENDERED.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
