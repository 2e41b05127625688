"""The analysis benchmark runs end to end (tiny repetitions: numbers are `make bench`'s job)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import analysis


def test_benchmark_runs_every_scenario_group_and_prints_targets(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert analysis.main(["--reps", "6", "--quick", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    groups = {r["group"] for r in data["rows"]}
    assert groups == {"equal", "share", "drift"}
    rules = {(r["scenario"], r["rule"]) for r in data["rows"] if r["group"] == "drift"}
    assert ("drift errors A/A (0.2%->2%->0.2%)", "deliver-pooled") in rules
    assert {b["share"] for b in data["bounds"]} == {0.1, 0.2, 0.5}
    targets = data["targets"]
    assert any("20% share errors 0.5% -> 1.0%: detection" in t for t in targets)
    assert any("drift errors A/A" in t for t in targets)
    assert all(t.startswith(("[met]", "[MISSED]")) for t in targets)
