"""The release (e2e/release.py, ``make release``) and the dependency pins (constraints.txt).

The built wheel is installed into a clean venv made here and its CLI run from there; the whole
release is made twice from a small stand-in image archive (the real image: e2e/test_release.py),
and the two runs must give the same bytes; the chart's default image is the archive's digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from e2e import constraints, release
from e2e.binaries import helm_path
from e2e.image import manifest_digest, version

ROOT = Path(__file__).resolve().parents[1]
EPOCH = 1_700_000_000
MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    deliver.dev/strategy: {strategy}
    deliver.dev/steps: "20,pause,50,100"
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: example.com/web:v1}}]
"""


# ---- dependency ranges and the constraints file


def test_runtime_dependencies_are_ranges_each_pinned_in_the_constraints() -> None:
    pins = constraints.read()
    for req in constraints.requirements(extras=()):
        operators = {spec.operator for spec in req.specifier}
        assert operators == {">=", "<"}, f"{req}: a compatible range (>=X.Y,<X+1), the exact pin in constraints.txt"
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} has no pin in constraints.txt"
        assert req.specifier.contains(pins[name]), f"constraints.txt pins {name}=={pins[name]}, outside {req}"
    for req in constraints.requirements()[len(constraints.requirements(extras=())) :]:
        assert req.specifier.contains(pins[canonicalize_name(req.name)]), req  # the test extra too


def test_the_constraints_are_the_closure_installed_here_and_consistent() -> None:
    """Every package the project and its test extra pull in is pinned at the version installed (the
    venv is installed with -c constraints.txt), and each pin satisfies every pinned package's
    requirement on it: an install with the constraints resolves."""
    pins = constraints.read()
    installed = constraints.closure(constraints.requirements())
    assert pins == installed, "constraints.txt is not this venv's closure: python -m e2e.constraints"
    from importlib import metadata

    for name in pins:
        for text in metadata.distribution(name).requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            wanted = canonicalize_name(req.name)
            assert req.specifier.contains(pins[wanted], prereleases=True), f"{name} needs {req}, pinned {pins[wanted]}"


def test_the_venv_and_the_image_install_with_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(VENV\)/\.installed: pyproject\.toml constraints\.txt$", makefile, re.M)
    assert "$(PIP) install -q -c constraints.txt -e '.[test]'" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY .*\bconstraints\.txt\b", dockerfile, re.M)
    assert "/opt/deliver/bin/pip install -c constraints.txt ." in dockerfile
    from e2e.image import INPUTS

    assert "constraints.txt" in INPUTS  # a new pin rebuilds the image


def test_make_release_runs_the_release_module() -> None:
    """e2e/test_release.py runs `python -m e2e.release` itself (make's venv step would reinstall a
    shared venv): the target must run the same module."""
    target = re.search(r"^release: .*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert target and "$(PY) -m e2e.release" in target.group(1)


def test_no_document_installs_the_unrelated_deliver_package() -> None:
    """`deliver` on the public index is another project; the distribution is deliver-k8s."""
    docs = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").iterdir(), *(ROOT / "charts").rglob("*.md")]
    for doc in docs:
        if doc.is_file():
            assert not re.search(r"pip3? install\s+['\"]?deliver(?![-\w])", doc.read_text()), doc
    assert constraints.project()["name"] == release.distribution() == "deliver-k8s"


# ---- the wheel in a clean venv

WHERE = "import delivery, importlib.metadata as m; print(delivery.__file__, m.version('deliver-k8s'))"


def test_the_wheel_installs_in_a_clean_venv_and_runs_the_cli(tmp_path: Path) -> None:
    """The venv has no pip and no packages; the wheel goes in with this venv's pip (offline, no
    dependencies); the dependencies come from this venv's site-packages through a .pth file (a path
    entry only: its editable install of deliver is not loaded), so deliver itself runs from the wheel."""
    out = tmp_path / "dist"
    out.mkdir()
    wheel = next(p for p in release.python_dists(out, EPOCH) if p.suffix == ".whl")
    assert wheel.name == f"deliver_k8s-{version()}-py3-none-any.whl"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
    )
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.check_output([str(python), "-c", purelib], text=True).strip())
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    where = subprocess.run(
        [str(python), "-c", WHERE],
        capture_output=True, text=True, env=env, check=True, cwd=tmp_path,  # not this tree's delivery/
    ).stdout.split()  # fmt: skip
    assert Path(where[0]).is_relative_to(site) and where[1] == version()

    deliver = venv / "bin" / "deliver"
    assert (venv / "bin" / "kubectl-deliver").exists()
    shown = subprocess.run([str(deliver), "--help"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "progressive delivery" in shown.stdout and "lint" in shown.stdout
    (tmp_path / "good.yaml").write_text(MANIFEST.format(strategy="canary"))
    (tmp_path / "typo.yaml").write_text(MANIFEST.format(strategy="canery"))
    good = subprocess.run([str(deliver), "lint", "good.yaml"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "1 annotated Deployment(s) checked, 0 invalid" in good.stdout + good.stderr
    typo = subprocess.run([str(deliver), "lint", "typo.yaml"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert typo.returncode == 1
    assert "unknown strategy 'canery'" in typo.stdout + typo.stderr


# ---- the release, made twice from a stand-in image


def blob(tar: tarfile.TarFile, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}"


def stand_in_image(path: Path) -> Path:
    """An OCI archive whose one layer holds a virtualenv with one package's metadata."""
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    metadata = b"Metadata-Version: 2.1\nName: example-dep\nVersion: 1.2.3\nSummary: a stand-in\nLicense: MIT\n"
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w:gz") as tar:
        for name, data in {
            f"opt/deliver/lib/{python}/site-packages/example_dep-1.2.3.dist-info/METADATA": metadata,
            f"opt/deliver/lib/{python}/site-packages/example_dep/__init__.py": b"",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(path, "w") as oci:
        layer_digest = blob(oci, layer.getvalue())
        config = blob(oci, b'{"config": {"User": "65532:65532"}}')
        manifest = json.dumps(
            {"schemaVersion": 2, "config": {"digest": config}, "layers": [{"digest": layer_digest}]}
        ).encode()
        index = json.dumps({"schemaVersion": 2, "manifests": [{"digest": blob(oci, manifest)}]}).encode()
        info = tarfile.TarInfo("index.json")
        info.size = len(index)
        oci.addfile(info, io.BytesIO(index))
    return path


def test_the_release_is_complete_checksummed_pinned_to_the_image_and_reproducible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = stand_in_image(tmp_path / "image.oci.tar")
    digest = manifest_digest(archive)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    url = "https://example.com/deliver/{version}"
    first, second = tmp_path / "one" / "release", tmp_path / "two" / "release"
    for out in (first, second):
        assert release.main(["--out", str(out), "--image-archive", str(archive), "--url", url]) == 0

    v = version()
    names = {p.name for p in first.iterdir()}
    assert names == {
        f"deliver_k8s-{v}-py3-none-any.whl", f"deliver_k8s-{v}.tar.gz", f"deliver-{v}.oci.tar",
        f"deliver-{v}.oci.digest", f"deliver-{v}.tgz", f"deliver-{v}.cdx.json", f"kubectl-deliver-{v}.tar.gz",
        "deliver.yaml", "constraints.txt", "SHA256SUMS",
    }  # fmt: skip
    assert (first / "constraints.txt").read_bytes() == (ROOT / "constraints.txt").read_bytes()
    # two runs, the same bytes: every file (the image archive is the same input here)
    assert (first / "SHA256SUMS").read_text() == (second / "SHA256SUMS").read_text()
    checked = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=first, capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stdout.count(": OK") == len(names) - 1, checked.stdout

    # the chart's default image is the archive's digest
    assert (first / f"deliver-{v}.oci.digest").read_text().strip() == digest
    helm = str(helm_path())
    values = yaml.safe_load(subprocess.check_output([helm, "show", "values", str(first / f"deliver-{v}.tgz")]))
    assert values["image"]["digest"] == digest
    rendered = subprocess.check_output(
        [helm, "template", "rel", str(first / f"deliver-{v}.tgz"), "--set", "holdPolicy.install=false",
         "--set", "image.repository=registry.example.com/deliver"], text=True,
    )  # fmt: skip
    assert f'image: "registry.example.com/deliver@{digest}"' in rendered

    # the sdist holds the sources, not the tests; its members in order, one time stamp
    with tarfile.open(first / f"deliver_k8s-{v}.tar.gz") as sdist:
        members = sdist.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {m.mtime for m in members} == {EPOCH}
    assert any(m.name.endswith("/delivery/__init__.py") for m in members)
    assert not any("/tests/" in m.name for m in members)

    # the SBOM lists the image's Python packages, none of this machine's
    bom = json.loads((first / f"deliver-{v}.cdx.json").read_text())
    assert bom["bomFormat"] == "CycloneDX"
    assert [(c["name"], c["version"]) for c in bom["components"]] == [("example-dep", "1.2.3")]
    assert bom["metadata"]["component"]["name"] == "deliver-k8s"

    # the krew manifest names the archive by its sha256 and URL; its launcher runs `deliver`
    plugin = yaml.safe_load((first / "deliver.yaml").read_text())
    platform = plugin["spec"]["platforms"][0]
    krew = first / f"kubectl-deliver-{v}.tar.gz"
    assert platform["sha256"] == hashlib.sha256(krew.read_bytes()).hexdigest()
    assert platform["uri"] == f"https://example.com/deliver/{v}/{krew.name}"
    assert platform["bin"] == "kubectl-deliver" and plugin["spec"]["version"] == f"v{v}"
    assert f"pip install 'deliver-k8s=={v}'" in plugin["spec"]["caveats"]
    with tarfile.open(krew) as tar:
        tar.extractall(tmp_path / "plugin", filter="data")
    launcher = tmp_path / "plugin" / "kubectl-deliver"
    assert os.access(launcher, os.X_OK)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "deliver").write_text('#!/bin/sh\necho "deliver $*"\n')
    (fake / "deliver").chmod(0o755)
    path = {"PATH": f"{fake}:/bin:/usr/bin"}
    ran = subprocess.run([str(launcher), "status", "web"], capture_output=True, text=True, env=path)
    assert ran.returncode == 0 and ran.stdout == "deliver status web\n"
    # with the wheel's own kubectl-deliver beside its deliver, that one runs (usage: `kubectl deliver`)
    (fake / "kubectl-deliver").write_text('#!/bin/sh\necho "kubectl-deliver $*"\n')
    (fake / "kubectl-deliver").chmod(0o755)
    ran = subprocess.run([str(launcher), "status", "web"], capture_output=True, text=True, env=path)
    assert ran.returncode == 0 and ran.stdout == "kubectl-deliver status web\n"
    missing = subprocess.run([str(launcher), "get"], capture_output=True, text=True, env={"PATH": "/nonexistent"})
    assert missing.returncode == 127 and "pip install 'deliver-k8s" in missing.stderr
