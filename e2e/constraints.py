"""constraints.txt: the exact version of every package deliver is tested with, runtime and test.

    python -m e2e.constraints            # rewrite constraints.txt from this venv
    python -m e2e.constraints --check    # exit 1 if constraints.txt differs from this venv

``[project].dependencies`` in pyproject.toml are compatible ranges (a shared CI agent installs deliver
beside other tools); the exact versions tested live here, and ``make venv``, the image (Dockerfile)
and CI install with ``-c constraints.txt``. The file is the closure of ``deliver-k8s[test]``'s
requirements as installed in this venv: each requirement's distribution, then theirs, markers
evaluated for this interpreter (Python 3.11 on Linux, as the image). After a change to the
dependencies: install the new package pinned (``pip install --no-deps NAME==VERSION``), then run this.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PATH = ROOT / "constraints.txt"
EXTRA = "test"
HEADER = """\
# The exact versions deliver is tested with: every runtime and test package, and theirs.
# pyproject.toml holds compatible ranges; `make venv`, the Dockerfile and CI install with
# `-c constraints.txt`. Generated from the venv by `python -m e2e.constraints`; do not edit by hand.
"""


def project() -> dict[str, object]:
    return dict(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"])


def requirements(extras: tuple[str, ...] = (EXTRA,)) -> list[Requirement]:
    """The project's own requirements: runtime, plus those of ``extras``."""
    table = project()
    found = [Requirement(r) for r in table["dependencies"]]  # type: ignore[attr-defined]
    optional: dict[str, list[str]] = table.get("optional-dependencies", {})  # type: ignore[assignment]
    for extra in extras:
        found += [Requirement(r) for r in optional[extra]]
    return found


def closure(roots: list[Requirement]) -> dict[str, str]:
    """Canonical name -> installed version of ``roots`` and everything they require (markers
    evaluated here, each requirement's extras followed). Raises if one is not installed."""
    found: dict[str, str] = {}
    todo = [(r, "") for r in roots]
    seen: set[tuple[str, str]] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        for wanted in ("", *sorted(req.extras)):
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            dist = metadata.distribution(req.name)
            found[name] = dist.version
            todo += [(Requirement(r), wanted) for r in dist.requires or []]
    return dict(sorted(found.items()))


def render(pins: dict[str, str]) -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in pins.items())


def read(path: Path = PATH) -> dict[str, str]:
    """Canonical name -> pinned version of a constraints file."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    text = render(closure(requirements()))
    if args.check:
        same = PATH.exists() and PATH.read_text() == text
        print(f"{PATH.name}: {'up to date' if same else 'differs from this venv: python -m e2e.constraints'}")
        return 0 if same else 1
    PATH.write_text(text)
    print(f"{PATH}: {len(text.splitlines()) - HEADER.count(chr(10))} packages pinned")
    return 0


if __name__ == "__main__":
    sys.exit(main())
