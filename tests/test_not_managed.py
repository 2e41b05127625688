"""One "not managed by deliver": ``spec.has_strategy`` decides it, ``spec.not_managed`` words it, for
the gate, the CLI's requests and verbs, and the wave file's stage checks alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from delivery import cli, gate
from delivery import spec as specmod
from delivery.cli.context import Globals, get_deployment
from delivery.cli.request_rules import check_request
from delivery.kube.client import DEPLOYMENTS
from delivery.wave.file import Change, Stage, stage_problems
from tests.fakekube import FakeKube
from tests.test_gate import TPL_B, B, deployment

DELIVERY = Path(__file__).resolve().parent.parent / "delivery"


def unannotated() -> dict[str, object]:
    d = deployment(TPL_B)
    d["metadata"]["annotations"] = {}
    return d


def test_every_place_gives_the_one_message(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    d = unannotated()
    assert not specmod.has_strategy(d)
    expected = specmod.not_managed("ns/web")
    assert "not managed by deliver" in expected and specmod.STRATEGY in expected and "add one" in expected

    kube = FakeKube()
    kube.put(DEPLOYMENTS, d)
    with pytest.raises(SystemExit) as exited:
        get_deployment(Globals(namespace_flag="ns", _kube=kube), "web")
    assert exited.value.code == 1
    from_verbs = capsys.readouterr().err.strip().removeprefix("deliver: ")

    found = {
        "gate": gate.decide(B, d)[1],
        "request": check_request(d, "promote"),
        "verbs": from_verbs,
        "wave": stage_problems(Stage("a", "ns", "web"), Change((("", "web:v3"),)), d)[0],
    }
    assert found == dict.fromkeys(found, expected)

    monkeypatch.setattr(Globals, "kube", lambda self: kube)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    result = CliRunner().invoke(cli.main, ["promote", "web", "-n", "ns"], catch_exceptions=False)
    assert result.exit_code == 1 and expected in result.output


def test_no_module_words_it_again() -> None:
    worded = sorted(
        str(p.relative_to(DELIVERY)) for p in DELIVERY.rglob("*.py") if "not managed by deliver" in p.read_text()
    )
    assert worded == ["spec.py"]
