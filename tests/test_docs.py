"""The documentation holds together: relative links resolve, and the Event reasons match the code.

Every relative link in README.md, CONTRIBUTING.md, CHANGELOG.md and docs/*.md must name a file
that exists, and a ``#fragment`` into a Markdown file must name one of its headings (GitHub's
anchor rules). docs/events.md is the one list of Event reasons: it must match ``EventReason`` in
strategies/reasons.py, the one module that spells them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from strategies.reasons import EventReason

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])

_FENCE = re.compile(r"^(```|~~~)")
_INLINE_CODE = re.compile(r"`[^`]*`")
_LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_REASON_ROW = re.compile(r"^\|\s*`([A-Z][A-Za-z]+)`\s*\|\s*(Normal|Warning)\s*\|")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def links(text: str) -> list[str]:
    """Link targets in Markdown prose (not in code blocks or inline code)."""
    found: list[str] = []
    for line in prose_lines(text):
        found.extend(_LINK.findall(_INLINE_CODE.sub("", line)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    result: set[str] = set()
    for line in prose_lines(text):
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        result.add(base if n == 0 else f"{base}-{n}")
    return result


def _show(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken_links(doc: Path) -> list[str]:
    problems = []
    for target in links(doc.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path_part, _, fragment = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists():
            problems.append(f"{target}: no such file {_show(dest)}")
            continue
        if fragment and dest.suffix == ".md" and fragment not in anchors(dest.read_text()):
            problems.append(f"{target}: no heading with anchor #{fragment} in {_show(dest)}")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    assert broken_links(doc) == []


def test_the_link_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# A heading\n\n## Second `one`\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#second-one) [web](https://example.com) [self](#top)\n"
        "# Top\n"
        "[gone](missing.md) [bad anchor](there.md#nope)\n"
        "`[not a link](nowhere.md)`\n```\n[in code](nowhere.md)\n```\n"
    )
    problems = broken_links(page)
    assert len(problems) == 2, problems
    assert "missing.md" in problems[0] and "#nope" in problems[1]


def test_github_anchors() -> None:
    assert slug("How the engine works: observe, plan, persist, act") == "how-the-engine-works-observe-plan-persist-act"
    assert slug("`deliver gate APP [--timeout 15m] [--junit report.xml]`") == (
        "deliver-gate-app---timeout-15m---junit-reportxml"
    )
    assert slug("`strategies/` — decide") == "strategies--decide"
    assert anchors("# A\n## A\n") == {"a", "a-1"}


def documented_reasons() -> dict[str, str]:
    rows = {}
    for line in (ROOT / "docs" / "events.md").read_text().splitlines():
        m = _REASON_ROW.match(line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} is listed twice"
            rows[m.group(1)] = m.group(2)
    return rows


def test_events_page_lists_the_reasons_of_the_code() -> None:
    documented = documented_reasons()
    assert len(documented) >= 20, "docs/events.md: the reason table was not found"
    assert set(documented) == {r.value for r in EventReason}
