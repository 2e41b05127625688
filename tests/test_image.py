"""The image's recipe agrees with the chart that runs it (the build itself: e2e/test_image.py)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from e2e.image import REPOSITORY, reference, version

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "deliver"


def test_the_charts_default_image_is_what_make_image_builds() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    tag = values["image"]["tag"] or chart["appVersion"]
    assert f"{values['image']['repository']}:{tag}" == reference() == f"{REPOSITORY}:{version()}"


def test_the_final_stage_runs_as_the_charts_user_and_copies_only_the_virtualenv() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    user = f"{values['podSecurityContext']['runAsUser']}:{values['podSecurityContext']['runAsGroup']}"
    assert re.search(rf"^USER {user}$", final, re.M)
    assert re.findall(r"^(COPY|ADD|RUN)\b.*", final, re.M) == ["COPY"]  # nothing installed, nothing run
    assert "--from=build /opt/deliver /opt/deliver" in final
    assert re.search(r'^ENTRYPOINT \["deliver"\]', final, re.M)  # the chart's command: ["deliver"]


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    for sources in copied:
        for source in sources.split():
            assert f"!{source.rstrip('/')}" in {i.rstrip("/") for i in ignore}, source
