"""Diff-ish check that splitting a Markdown document lost nothing.

    python hack/docs_moved.py [REV]     # default REV: 25630e6, the last commit with the one-document README

Prints the headings of README.md at REV that no longer appear as text, numbers whose count dropped,
and prose lines not found verbatim (whitespace-normalised) in README.md, CONTRIBUTING.md,
CHANGELOG.md, docs/*.md and the chart README. Exit 1 when a number was lost; lines and headings
are for a human to judge (renamed headings and reworded lines show up there).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?\s?(?:%|pp|ms|s|min|Gi)?(?!\w)")


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def main(rev: str = "25630e6") -> int:
    old = subprocess.run(
        ["git", "show", f"{rev}:README.md"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    files = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    files.append(ROOT / "charts" / "deliver" / "README.md")
    new = "\n".join(p.read_text() for p in files if p.exists())
    new_norm = norm(new)

    print("headings not found as text:")
    fenced = False
    for line in old.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = re.match(r"^#{1,6} (.*)", line)
        if m and not fenced and m.group(1) not in new:
            print("  ", m.group(1))

    print("numbers whose count dropped (old -> new):")
    before, after = Counter(NUMBER.findall(old)), Counter(NUMBER.findall(new))
    lost = {k: (v, after[k]) for k, v in sorted(before.items()) if after[k] < v}
    for k, (v, w) in lost.items():
        print(f"   {k!r}: {v} -> {w}")

    print("prose lines not found verbatim:")
    for line in old.splitlines():
        text = norm(line.lstrip("*-# "))
        if len(text) > 25 and text not in new_norm:
            print("  ", text[:150])
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
