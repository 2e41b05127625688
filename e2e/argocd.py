"""Argo CD's Lua contract, run here: the health check and resource actions deliver ships for Argo CD.

``python -m e2e.argocd`` renders ``gitops/argocd/argocd-cm.yaml`` (what users merge into their
``argocd-cm`` ConfigMap) from the Lua sources in ``gitops/argocd/`` (a line ``-- #include json.lua``
inlines the shared JSON reader). ``ArgoLua`` runs the scripts *from that rendered file* in
Argo CD's own sandbox: ``e2e/argolua``, a small Go program on the Lua VM Argo CD embeds
(gopher-lua v1.1.2) that opens exactly the libraries Argo CD opens (package, base, table and a
cut-down os; no string, no math), built once and cached by ``e2e/binaries.py``. Argo CD's
contract: the object as the global table ``obj``; a health script returns ``hs`` with ``status``
and ``message``; ``discovery.lua`` returns action name -> ``{disabled = bool}``; an action returns
the modified ``obj``. Used by tests/test_argocd.py (recorded objects) and e2e/test_gitops.py (live ones).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from e2e.cluster import REPO_ROOT

SOURCES = REPO_ROOT / "gitops" / "argocd"
RENDERED = SOURCES / "argocd-cm.yaml"
# the same two scripts for argo-helm (values: configs.cm) and for the Argo CD operator (ArgoCD CR)
RENDERED_HELM = SOURCES / "argo-helm-values.yaml"
RENDERED_OPERATOR = SOURCES / "argocd-operator-patch.yaml"
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


def _actions() -> str:
    """The actions value: discovery.lua and the definitions, as Argo CD reads it (YAML)."""
    actions = "discovery.lua: |\n" + _block(_source("actions/discovery.lua"), 2) + "definitions:\n"
    for verb in VERBS:
        actions += f"  - name: {verb}\n    action.lua: |\n" + _block(_source(f"actions/{verb}.lua"), 6)
    return actions


def render() -> str:
    """The argocd-cm.yaml text: the health check and the actions, each script self-contained."""
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
        f"  {HEALTH_KEY}: |\n" + _block(_source("health.lua"), 4) + f"  {ACTIONS_KEY}: |\n" + _block(_actions(), 4)
    )


def render_helm_values() -> str:
    """Values for the argo-helm chart (argo-cd): the same two argocd-cm keys under configs.cm."""
    return (
        "# deliver's Argo CD customizations for apps/Deployment as values of the argo-helm chart argo-cd\n"
        "# (helm upgrade ... -f this file; docs/gitops.md). Rendered by `python -m e2e.argocd`.\n"
        "configs:\n"
        "  cm:\n"
        f"    {HEALTH_KEY}: |\n" + _block(_source("health.lua"), 6) + f"    {ACTIONS_KEY}: |\n" + _block(_actions(), 6)
    )


def render_operator_patch() -> str:
    """A merge patch for the Argo CD operator's ArgoCD resource (spec.resourceHealthChecks and
    spec.resourceActions: group, kind, and the script as check / the actions as action)."""
    return (
        "# deliver's Argo CD customizations for apps/Deployment for the Argo CD operator's ArgoCD resource\n"
        "# (kubectl patch argocd NAME --type merge --patch-file this file; a merge patch replaces both lists:\n"
        "# add your own entries to them first; docs/gitops.md). Rendered by `python -m e2e.argocd`.\n"
        "spec:\n"
        "  resourceHealthChecks:\n"
        "    - group: apps\n"
        "      kind: Deployment\n"
        "      check: |\n" + _block(_source("health.lua"), 8) + "  resourceActions:\n"
        "    - group: apps\n"
        "      kind: Deployment\n"
        "      action: |\n" + _block(_actions(), 8)
    )


def rendered_files() -> dict[Path, str]:
    """Each file ``python -m e2e.argocd`` writes, with its text."""
    return {RENDERED: render(), RENDERED_HELM: render_helm_values(), RENDERED_OPERATOR: render_operator_patch()}


def scripts() -> dict[str, str]:
    """The scripts as Argo CD reads them from the rendered file: health, discovery and each verb."""
    data = yaml.safe_load(RENDERED.read_text())["data"]
    actions = yaml.safe_load(data[ACTIONS_KEY])
    found = {"health": data[HEALTH_KEY], "discovery": actions["discovery.lua"]}
    for definition in actions["definitions"]:
        found[definition["name"]] = definition["action.lua"]
    return found


class LuaError(RuntimeError):
    """A script failed in Argo CD's sandbox (Argo CD shows the resource's health as Unknown, or the
    action as failed, with this message)."""


class ArgoLua:
    """The scripts of gitops/argocd/argocd-cm.yaml in Argo CD's own Lua sandbox (e2e/argolua).

    As Argo CD runs them (argoproj/argo-cd util/lua/lua.go): gopher-lua v1.1.2 with only the
    package, base and table libraries and a cut-down os (``require("os")``: time and date); a
    health check gets every standard library only with ``open_libs`` (the override's
    ``useOpenLibs``, which deliver's script does not set), actions never. ``obj`` is converted from
    JSON as Argo CD converts it (a null is no value; empty maps and arrays are empty tables) and
    the result read back through gopher-json, as Argo CD reads it.
    """

    def __init__(self, open_libs: bool = False) -> None:
        from e2e.binaries import build_argocd_lua

        self.scripts = scripts()
        self.open_libs = open_libs
        self._binary = build_argocd_lua()

    def run(self, script: str, objects: list[dict[str, Any]], mode: str = "health") -> list[Any]:
        """What ``script`` returns for each object (as JSON data), run as Argo CD runs a health check
        (``mode`` "health"; "health-openlibs" with useOpenLibs) or an action ("action");
        LuaError if it failed for any."""
        request = {"mode": mode, "script": script, "objects": objects}
        out = subprocess.run(
            [str(self._binary)], input=json.dumps(request), capture_output=True, text=True, timeout=60, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"argocd-lua exited {out.returncode}: {out.stderr}")
        results = []
        for outcome in json.loads(out.stdout):
            if "error" in outcome:
                raise LuaError(outcome["error"])
            results.append(outcome.get("result"))
        return results

    def run_many(self, name: str, objects: list[dict[str, Any]]) -> list[Any]:
        """What script ``name`` (health, discovery or a verb) returns for each object."""
        mode = "action" if name != "health" else "health-openlibs" if self.open_libs else "health"
        try:
            return self.run(self.scripts[name], objects, mode)
        except LuaError as e:
            raise LuaError(f"{name}: {e}") from None

    def _run(self, name: str, obj: dict[str, Any]) -> Any:
        return self.run_many(name, [obj])[0]

    def health_many(self, objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """(status, message) of the health script for each object, as Argo CD reads the result."""
        return [_health(hs) for hs in self.run_many("health", objects)]

    def health(self, obj: dict[str, Any]) -> tuple[str, str]:
        """(hs.status, hs.message) of the health script for this Deployment."""
        return self.health_many([obj])[0]

    def enabled_actions(self, obj: dict[str, Any]) -> set[str]:
        """The actions discovery.lua offers (not disabled) for this Deployment, read as Argo CD reads them."""
        found = self._run("discovery", obj)
        if found == []:  # an empty table: no actions
            return set()
        if not isinstance(found, dict):
            raise LuaError(f"discovery: expected a table of actions, got {found!r}")
        return {
            name for name, flags in found.items() if not (isinstance(flags, dict) and flags.get("disabled") is True)
        }

    def act(self, verb: str, obj: dict[str, Any]) -> dict[str, Any]:
        """The object the action returns (what Argo CD patches onto the cluster)."""
        result = self._run(verb, obj)
        if not isinstance(result, dict):
            raise LuaError(f"{verb}: expected the modified object, got {result!r}")
        return result


def _health(hs: Any) -> tuple[str, str]:
    """Argo CD's reading of a health script's result: a table with a valid ``status``."""
    if not isinstance(hs, dict):
        raise LuaError(f"health: expected a table with status and message, got {hs!r}")
    status, message = hs.get("status"), hs.get("message") or ""
    if status not in HEALTH_STATUSES:
        raise LuaError(f"health: status {status!r} is not one Argo CD knows (it shows Unknown): {hs}")
    return str(status), str(message)


def main() -> int:
    for path, text in rendered_files().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
