"""``deliver lint``: check the deliver.dev/* annotations of Deployments in manifest files, offline."""

from __future__ import annotations

import sys
from typing import Any

import click
import yaml

from delivery import output, yamlfile
from delivery import spec as specmod
from delivery.cli.context import Globals, common, fail, note
from delivery.errors import SpecError
from delivery.gate import EXIT_FAILED, EXIT_USAGE


def lint_documents(docs: list[Any], source: str) -> list[dict[str, Any]]:
    """Every annotated Deployment in ``docs`` with its problems (and warnings). Pure, offline."""
    found: list[dict[str, Any]] = []
    configmaps = _configmaps(docs)

    def visit(doc: Any, index: int) -> None:
        if not isinstance(doc, dict):
            return
        if doc.get("kind") == "List" or (str(doc.get("kind", "")).endswith("List") and "items" in doc):
            for item in doc.get("items") or []:
                visit(item, index)
            return
        if doc.get("kind") != "Deployment":
            return
        meta = doc.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        ours = [k for k in annotations if str(k).startswith(specmod.PREFIX)]
        tpl_annotations = (((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
            "annotations"
        ) or {}
        warnings = []
        if any(str(k).startswith(specmod.PREFIX) for k in tpl_annotations):
            warnings.append(
                "deliver.dev/* annotations on the pod template are ignored; put them on the Deployment's metadata"
            )
        if not specmod.has_strategy(doc):
            if ours:
                warnings.append(f"has {', '.join(sorted(ours))} but no {specmod.STRATEGY}: deliver ignores it")
            if warnings:
                found.append(
                    {
                        "file": source,
                        "document": index,
                        "kind": "Deployment",
                        "name": meta.get("name", ""),
                        "namespace": meta.get("namespace", ""),
                        "valid": True,
                        "problems": [],
                        "warnings": warnings,
                    }
                )
            return
        # annotation values must be strings in a manifest; kubectl would refuse numbers and booleans
        problems = [
            {"key": str(k), "problem": f"value must be a string (quote it): {v!r}"}
            for k, v in annotations.items()
            if str(k).startswith(specmod.PREFIX) and not isinstance(v, str)
        ]
        stringified = dict(
            doc,
            metadata=dict(
                meta, annotations={str(k): str(v) if not isinstance(v, str) else v for k, v in annotations.items()}
            ),
        )
        # the analysis ConfigMap, when it is in the same files: its queries are checked too
        cm = configmaps.get((str(meta.get("namespace") or ""), str(annotations.get(ANALYSIS_CONFIG, "")).strip()))
        try:
            errors = specmod.problems(stringified, None if cm is None else (lambda _name: cm))
        except Exception as exc:  # a malformed manifest is a lint finding, not a crash
            errors = [SpecError(specmod.STRATEGY, f"cannot validate: {exc}")]
        for e in errors:
            if all(p["key"] != e.key for p in problems):
                problems.append({"key": e.key, "problem": e.problem})
        found.append(
            {
                "file": source,
                "document": index,
                "kind": "Deployment",
                "name": meta.get("name", ""),
                "namespace": meta.get("namespace", ""),
                "valid": not problems,
                "problems": problems,
                "warnings": warnings,
            }
        )

    for i, doc in enumerate(docs):
        visit(doc, i)
    return found


ANALYSIS_CONFIG = "deliver.dev/analysis-config"


def _configmaps(docs: list[Any]) -> dict[tuple[str, str], dict[str, str]]:
    """The ConfigMaps among ``docs`` (and their Lists) by (namespace, name), data as strings."""
    out: dict[tuple[str, str], dict[str, str]] = {}

    def visit(doc: Any) -> None:
        if not isinstance(doc, dict):
            return
        if isinstance(doc.get("items"), list) and str(doc.get("kind", "")).endswith("List"):
            for item in doc["items"]:
                visit(item)
        elif doc.get("kind") == "ConfigMap" and isinstance(doc.get("metadata"), dict):
            meta = doc["metadata"]
            data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
            out[(str(meta.get("namespace") or ""), str(meta.get("name", "")))] = {
                str(k): str(v) for k, v in (data or {}).items()
            }

    for doc in docs:
        visit(doc)
    return out


def read_manifest(path: str) -> tuple[list[Any], dict[str, Any] | None]:
    """The YAML documents of ``path`` (``-``: stdin), or no documents and a finding when it is not YAML.

    An unreadable file is a usage error (exit 2).
    """
    try:
        if path == "-":  # at most one byte past the cap: a larger text is refused, never held whole
            text = sys.stdin.read(yamlfile.YAML_MAX + 1)
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read(yamlfile.YAML_MAX + 1)
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}", EXIT_USAGE)
    try:
        return yamlfile.load_all(text), None
    except yaml.YAMLError as exc:
        return [], {
            "file": path,
            "document": None,
            "kind": "",
            "name": "",
            "namespace": "",
            "valid": False,
            "problems": [{"key": "", "problem": f"not valid YAML: {exc}"}],
            "warnings": [],
        }


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@common
@click.pass_obj
def lint(g: Globals, files: tuple[str, ...]) -> None:
    """Validate the deliver.dev/* annotations of the Deployments in FILES (YAML, multi-document; - is stdin).

    Offline: no cluster is contacted. Exit 1 if any annotation is invalid (each one is listed).
    """
    results: list[dict[str, Any]] = []
    for path in files:
        docs, unreadable = read_manifest(path)
        if unreadable is not None:
            results.append(unreadable)
            continue
        results.extend(lint_documents(docs, path))
    bad = [r for r in results if not r["valid"]]
    if g.machine:
        click.echo(output.dump({"results": results, "valid": not bad}, g.output))
    else:
        for r in results:
            where = f"{r['file']}: Deployment {r['name']}" if r["name"] else r["file"]
            for p in r["problems"]:
                click.echo(f"{where}: {p['key'] + ': ' if p['key'] else ''}{p['problem']}")
            for w in r["warnings"]:
                note(f"{where}: warning: {w}")
        checked = sum(1 for r in results if r["kind"] == "Deployment")
        note(f"{checked} annotated Deployment(s) checked, {len(bad)} invalid")
    if bad:
        sys.exit(EXIT_FAILED)
