"""The image's recipe agrees with the chart that runs it (the build itself: e2e/test_image.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
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


def test_the_base_records_its_debian_package_versions(tmp_path: Path) -> None:
    import io
    import tarfile

    status = (
        b"Package: python3\nStatus: install ok installed\nVersion: 3.11.2-1+b1\n\n"
        b"Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        b"Package: ca-certificates\nStatus: install ok installed\nVersion: 20230311\nDescription: x\n more\n"
    )
    tarball = tmp_path / "base.tar"
    with tarfile.open(tarball, "w") as tar:
        info = tarfile.TarInfo("./var/lib/dpkg/status")
        info.size = len(status)
        tar.addfile(info, io.BytesIO(status))
    from e2e.image import packages

    assert packages(tarball) == {"ca-certificates": "20230311", "python3": "3.11.2-1+b1"}


def test_a_debian_snapshot_pins_the_base_sources(monkeypatch: Any) -> None:
    from e2e.image import MIRRORS, SNAPSHOT_ENV, mirrors

    monkeypatch.delenv(SNAPSHOT_ENV, raising=False)
    assert mirrors() == MIRRORS
    pinned = mirrors("20261201T000000Z")
    assert all("snapshot.debian.org/archive/" in m and "/20261201T000000Z bookworm" in m for m in pinned)
    with pytest.raises(SystemExit):
        mirrors("yesterday")


def test_the_chart_pins_the_image_by_digest_when_given() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["digest"] == ""  # set per release: `make image` prints it
    helper = (CHART / "templates" / "_helpers.tpl").read_text()
    assert '"%s@%s"' in helper and "sha256:[a-f0-9]{64}" in helper
    assert 'include "deliver.image"' in (CHART / "templates" / "deployment.yaml").read_text()
