"""The wave file's schema (issue 25): pydantic models, the JSON Schema published for editors, the problems' wording."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from delivery import yamlfile
from delivery.errors import WaveFileError
from delivery.wave import schema
from delivery.wave.file import OnFailure, parse
from tests import test_wave

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "docs" / "wave-file.schema.json"


def problems_of(text: str) -> list[str]:
    with pytest.raises(WaveFileError) as info:
        parse(text)
    return info.value.problems


# ---------------------------------------------------------------- the published JSON Schema


def test_the_published_schema_is_the_models_one() -> None:
    """docs/wave-file.schema.json is regenerated with `python -m delivery.wave.schema > docs/wave-file.schema.json`."""
    written = subprocess.run(
        [sys.executable, "-m", "delivery.wave.schema"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(written) == schema.json_schema()
    assert PUBLISHED.read_text() == written, "stale: run python -m delivery.wave.schema > docs/wave-file.schema.json"


def test_the_schema_is_draft_7_and_closed() -> None:
    shown = schema.json_schema()
    assert shown["$schema"] == "http://json-schema.org/draft-07/schema#" and "$defs" not in shown
    refs = re.findall(r'"\$ref": "([^"]+)"', json.dumps(shown))
    assert refs and all(r.removeprefix("#/definitions/") in shown["definitions"] for r in refs)
    assert set(shown["properties"]) == {"wave", "on-failure", "timeout", "soak", "stages"}
    stage = shown["definitions"]["StageSchema"]
    assert set(stage["properties"]) == {
        "name",
        "context",
        "kubeconfig",
        "namespace",
        "app",
        "overrides",
        "soak",
        "timeout",
    }
    assert shown["additionalProperties"] is False and stage["additionalProperties"] is False
    overrides = stage["properties"]["overrides"]["anyOf"][0]  # or null
    assert "steps" in overrides["properties"] and "strategy" not in overrides["properties"]
    assert overrides["additionalProperties"] is False


def test_on_failure_takes_the_runner_s_values() -> None:
    field = schema.WaveFileSchema.model_fields["on_failure"]
    assert set(get_args(field.annotation)) == {m.value for m in OnFailure}


# ---------------------------------------------------------------- every example is valid


def _doc_examples() -> list[tuple[str, str]]:
    found = []
    for md in sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")]):
        for i, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", md.read_text(), re.S)):
            doc = yamlfile.load(block)
            if isinstance(doc, dict) and "wave" in doc and "stages" in doc:
                found.append((f"{md.name}#{i}", block))
    return found


DOC_EXAMPLES = _doc_examples()
FIXTURES = [
    ("WAVE", test_wave.WAVE),
    ("THREE-rollback", test_wave.THREE.format(mode="rollback")),
    ("THREE-hold", test_wave.THREE.format(mode="hold")),
    ("PARALLEL", test_wave.PARALLEL),
]


def test_the_docs_have_a_wave_file_example() -> None:
    assert any(name.startswith("waves.md") for name, _ in DOC_EXAMPLES)


@pytest.mark.parametrize("name, text", DOC_EXAMPLES + FIXTURES, ids=[n for n, _ in DOC_EXAMPLES + FIXTURES])
def test_every_example_wave_file_is_valid(name: str, text: str) -> None:
    valid, problems = schema.problems(yamlfile.load(text))
    assert valid is not None and problems == [], problems
    assert parse(text).stages  # and is read into the runner's Wave


# ---------------------------------------------------------------- strict, and where each problem is


def test_a_name_with_a_trailing_newline_is_refused() -> None:
    """Defect: Python's `$` matches before a final newline, so "shop\\n" passed as a namespace."""
    found = problems_of('wave: w\nstages: [{name: a, namespace: "shop\\n", app: x}]')
    assert found == [
        "stages[0].namespace (stage a): 'shop\\n' is not a namespace name (lower case letters, digits, '-'; "
        "a letter or digit first and last; at most 63 characters)"
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("wave: w\nstages: [{name: 1, namespace: n, app: x}]", "stages[0].name: 1 is a YAML number, not a string"),
        ("wave: 2024\nstages: [{name: a, namespace: n, app: x}]", "write it in quotes ('2024')"),
        ("wave: w\nsoak: true\nstages: [{name: a, namespace: n, app: x}]", "soak: 'true' is not a duration"),
        ("wave: w\nstages: [{name: a, namespace: n, app: [x]}]", "stages[0].app (stage a): ['x'] is a list; write"),
        ("wave: w\nstages: [{name: a, namespace: n, app: }]", "stages[0].app (stage a): empty; write"),
        (
            "wave: w\nstages: [{name: a, context: ' ', namespace: n, app: x}]",
            "stages[0].context (stage a): ' ' is blank",
        ),
        ("wave: w\ntimeout: 0s\nstages: [{name: a, namespace: n, app: x}]", "timeout: must be more than 0s"),
        ("wave: w\nsoak: 8d\nstages: [{name: a, namespace: n, app: x}]", "soak: '8d' is not a duration"),
        ("wave: w\nsoak: 169h\nstages: [{name: a, namespace: n, app: x}]", "soak: '169h' is out of range"),
        ("wave: w\nstages: [{name: a, namespace: n, app: x, overrides: {steps: [1]}}]", "overrides.steps (stage a)"),
        ("wave: w\nstages: [{name: a, namespace: n, app: x, overrides: [steps]}]", "must be a mapping of deliver"),
        ("wave: w\nstages: [web]", "stages[0]: a stage is a mapping"),
        ("wave: w\nstages: {web: 1}", "stages: a non-empty list of stages is needed"),
        ("wave: w\nstages: [{parallel: {}}]", "stages[0].parallel: `parallel` takes"),
        ("wave: w\nstages: [{parallel: [{name: a}], after: 1}]", "stages[0].after: `parallel` takes"),
        ("wave: w\non_failure: hold\nstages: [{name: a, namespace: n, app: x}]", "on_failure: unknown field"),
        ("wave: w\n1: x\nstages: [{name: a, namespace: n, app: x}]", "1: unknown field (known: on-failure,"),
    ],
)
def test_each_problem_names_its_place_and_what_to_write(text: str, expected: str) -> None:
    found = problems_of(text)
    assert any(expected in p for p in found), found


def test_a_problem_in_a_parallel_stage_is_named_by_its_path_and_its_stage() -> None:
    found = problems_of(
        "wave: w\nstages:\n  - {name: a, namespace: n, app: x}\n"
        "  - parallel:\n    - {name: b, namespace: n, app: x, context: b}\n"
        "    - {name: c, namespace: m, app: x, soak: soon, clutser: c}\n"
    )
    assert found == [
        "stages[1].parallel[1].soak (stage c): 'soon' is not a duration (a unit is required: 30s, 1m30s, 2h, 250ms)",
        "stages[1].parallel[1].clutser (stage c): unknown field "
        "(known: app, context, kubeconfig, name, namespace, overrides, soak, timeout)",
    ]


def test_yaml_scalars_in_overrides_are_written_as_their_text() -> None:
    """As before the schema: an override is an annotation's text, `false` and `2` written unquoted too."""
    w = parse("wave: w\nstages: [{name: a, namespace: n, app: x, overrides: {auto-rollback: false, max-restarts: 2}}]")
    assert w.stages[0].overrides == (("deliver.dev/auto-rollback", "false"), ("deliver.dev/max-restarts", "2"))
    prefixed = parse("wave: w\nstages: [{name: a, namespace: n, app: x, overrides: {deliver.dev/interval: 5s}}]")
    assert prefixed.stages[0].overrides == (("deliver.dev/interval", "5s"),)


def test_stages_twice_are_found_beside_the_other_problems() -> None:
    found = problems_of(
        "wave: w\nsoak: x\nstages: [{name: a, context: c, namespace: n, app: x}, {name: b, context: ' c', "
        "namespace: n, app: x}, {name: a, namespace: m, app: [x]}]"
    )
    assert found[0].startswith("soak: ") and found[1].startswith("stages[2].app (stage a)")
    assert found[2:] == [
        "stage a: named 2 times: a stage appears once in a wave",
        "stage b: the same cluster, namespace and app as stage a (a stage twice)",
    ]


def test_a_long_value_is_quoted_shortened() -> None:
    """The file is hostile input: a message quotes at most 80 characters of a value."""
    found = problems_of(f"wave: w\nstages: [{{name: a, namespace: {'x' * 100_000}, app: x}}]")
    assert len(found) == 1 and len(found[0]) < 400, found


def test_the_cli_exits_2_on_a_bad_file_naming_each_place(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from delivery import cli

    wave = tmp_path / "wave.yaml"
    wave.write_text("wave: w\nstages:\n  - {name: a, context: staging, namespace: n, app: 7, soak: 30}\n")
    r = CliRunner().invoke(cli.main, ["--kubeconfig", str(test_wave.kubeconfig(tmp_path)), "wave", str(wave), "--lint"])
    assert r.exit_code == 2, r.output
    assert f"{wave}: stages[0].app (stage a): 7 is a YAML number, not a string" in r.output
    assert f"{wave}: stages[0].soak (stage a): '30' is not a duration: add a unit, e.g. 30s" in r.output
    assert "the wave is not valid (2 problem(s)); nothing was changed" in r.output


HUGE = "0x" + "f" * 4000  # YAML reads a hex integer without Python's 4,300-digit limit on str()


@pytest.mark.parametrize(
    "line",
    [
        f"on-failure: {HUGE}",
        f"wave: {HUGE}",
        f"  - {{name: {HUGE}, namespace: shop, app: web}}",
        "  - {name: a, namespace: shop, app: web, soak: " + "9" * 5000 + "}",
        f"  - {{name: a, namespace: shop, app: web, overrides: {{steps: {HUGE}}}}}",
    ],
)
def test_a_huge_number_anywhere_is_a_problem_not_a_traceback(line: str) -> None:
    """A value Python cannot turn into text (over 4,300 digits) raised ValueError past the checks."""
    base = {"on-failure": "on-failure: rollback", "wave": "wave: shop"}
    head = [base["wave"] if not line.startswith("wave:") else line, "stages:"]
    if line.startswith("on-failure:"):
        head = [base["wave"], line, "stages:"]
    body = [line] if line.startswith("  - ") else ["  - {name: a, namespace: shop, app: web}"]
    with pytest.raises(WaveFileError) as err:
        parse("\n".join(head + body) + "\n", "wave.yaml")
    assert "4300" not in str(err.value) and "set_int_max_str_digits" not in str(err.value), str(err.value)
