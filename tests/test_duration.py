"""One duration grammar (issue 25): the Kubernetes one, for flags, annotations and wave files alike."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery import duration, spec
from delivery.analysis.checks import parse_resolution
from delivery.errors import SpecError


@pytest.mark.parametrize(
    "text, seconds",
    [("90s", 90.0), ("1m30s", 90.0), ("2h", 7200.0), ("250ms", 0.25), ("1h5m30s", 3930.0), (" 5m ", 300.0)],
)
def test_the_kubernetes_form(text: str, seconds: float) -> None:
    assert duration.seconds(text) == seconds


@pytest.mark.parametrize("text", ["90", "0.5", "1.5m", "-5s", "1d", "5 minutes", "", "s", "123456s", "1h" * 20])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(duration.DurationError, match="not a duration"):
        duration.seconds(text)


def test_every_reader_speaks_the_same_grammar() -> None:
    """interval refused 90, analysis-resolution refused 1m30s and took 90, the CLI took both: now one."""
    for text in ("1m30s", "90s"):
        assert spec.parse_duration("deliver.dev/interval", text) == parse_resolution(text) == 90.0
    for reader in (lambda t: spec.parse_duration("deliver.dev/interval", t), parse_resolution):
        with pytest.raises(SpecError, match="add a unit, e.g. 90s"):
            reader("90")


def test_a_wave_file_number_is_told_to_add_a_unit() -> None:
    from delivery.wave.file import WaveFileError, parse

    with pytest.raises(WaveFileError, match="add a unit, e.g. 30s"):
        parse("wave: w\nsoak: 30\nstages: [{name: a, namespace: n, app: x}]")
    assert parse("wave: w\nsoak: 30s\nstages: [{name: a, namespace: n, app: x}]").stages[0].soak == 30.0


@settings(max_examples=400, deadline=None)
@given(st.from_regex(r"\A[0-9hms.\- ]{0,14}\Z") | st.from_regex(r"\A([0-9]{1,6}(h|m|s|ms)){1,5}\Z"))
def test_the_grammar_is_the_official_client_s(text: str) -> None:
    """The same answers as kubernetes.utils.duration (not imported by deliver: it loads the client)."""
    from kubernetes.utils.duration import parse_duration as official

    try:
        expected: float | None = official(text.strip()).total_seconds()
    except ValueError:
        expected = None
    try:
        got: float | None = duration.seconds(text)
    except duration.DurationError:
        got = None
    assert got == expected


def test_the_annotation_schema_does_not_load_the_client() -> None:
    import subprocess
    import sys

    code = "import sys, delivery.spec, delivery.duration; print('kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
