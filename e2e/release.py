"""The release artefacts, reproducibly and offline once the venv exists: ``make release``.

    python -m e2e.release                         # dist/release/
    python -m e2e.release --base IMAGE --url URL  # a registry base; where the krew archive is served

Into ``dist/release/`` (docs/release.md):

* ``deliver_k8s-VERSION-py3-none-any.whl`` and ``deliver_k8s-VERSION.tar.gz``: ``python -m build
  --no-isolation`` (build and setuptools pinned in the test extra) from a copy of the files git
  tracks; the wheel is built from the sdist, the sdist rewritten with sorted members and fixed times.
* ``deliver-VERSION.oci.tar``: the controller image (e2e/image.py, cached by the hash of its
  inputs) and ``deliver-VERSION.oci.digest``, its manifest digest.
* ``deliver-VERSION.tgz``: the chart (``helm package``, the helm the tests use) whose
  ``image.digest`` defaults to that digest.
* ``deliver-VERSION.cdx.json``: a CycloneDX SBOM of the Python packages in the image's virtualenv
  (``cyclonedx-py environment`` on their metadata, read from the archive's layers).
* ``kubectl-deliver-VERSION.tar.gz`` and ``deliver.yaml``: a krew plugin (a launcher that runs the
  ``deliver`` command of the installed wheel) and its manifest, with the archive's sha256.
* ``constraints.txt``: the exact versions the release was tested with (``pip install
  deliver-k8s==VERSION -c constraints.txt``).
* ``SHA256SUMS``: every file above (``sha256sum -c SHA256SUMS``).

Every time stamp is ``SOURCE_DATE_EPOCH`` (default: the last commit's time): two runs on the same
commit give the same wheel, sdist, chart, krew archive and SBOM bytes (the image is reused from the
cache; a rebuild of it may differ in its layers' times).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

from e2e import image
from e2e.binaries import helm_path
from e2e.cluster import REPO_ROOT

CHART = REPO_ROOT / "charts" / "deliver"
OUT = REPO_ROOT / "dist" / "release"
VENV_SITE = re.compile(r"^/?opt/deliver/lib/(python3\.\d+)/site-packages/([^/]+\.dist-info)/(.+)$")
KREW_URL = "https://github.com/deliver-dev/deliver/releases/download/v{version}"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _log(message: str) -> None:
    print(f"[release {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def distribution() -> str:
    return str(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["name"])


def source_date_epoch() -> int:
    """$SOURCE_DATE_EPOCH, else the last commit's time: every time stamp of the release."""
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    out = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=REPO_ROOT, capture_output=True, text=True)
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip().isdigit() else 315532800


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


PACKAGE_SOURCES = ("pyproject.toml", "README.md", "MANIFEST.in", "delivery", "strategies")


def tracked_files() -> list[str]:
    """The working tree's files that git tracks or would (not ignored), sorted; outside a git
    checkout, what the package is built from (``PACKAGE_SOURCES``, byte code left out)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True
    )
    if out.returncode == 0:
        names = out.stdout.decode().split("\0")
    else:
        paths = [REPO_ROOT / name for name in PACKAGE_SOURCES]
        files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*"))]
        names = [str(f.relative_to(REPO_ROOT)) for f in files if "__pycache__" not in f.parts]
    return sorted(name for name in names if name and (REPO_ROOT / name).is_file())


def deterministic_tar_gz(members: Iterator[tuple[tarfile.TarInfo, bytes | None]], target: Path, epoch: int) -> None:
    """A tar.gz of ``members`` (sorted by name) with fixed times and owners, and a fixed gzip header."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in sorted(members, key=lambda m: m[0].name):
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
            info.pax_headers = {}
            info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    with open(target, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=epoch) as gz:
        gz.write(buffer.getvalue())


def normalize_tar_gz(path: Path, epoch: int) -> None:
    """Rewrite a tar.gz (setuptools' sdist) deterministically: same contents, fixed times and order."""
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]  # type: ignore[union-attr]
    deterministic_tar_gz(iter(members), path, epoch)


def python_dists(out: Path, epoch: int) -> list[Path]:
    """The sdist, then the wheel built from it, offline (``python -m build --no-isolation``)."""
    with tempfile.TemporaryDirectory(prefix="deliver-release-") as tmp:
        src, built = Path(tmp) / "src", Path(tmp) / "dist"
        for name in tracked_files():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, src / name)
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch), PYTHONHASHSEED="0")
        subprocess.run(
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(built), str(src)],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        results = []
        for path in sorted(built.iterdir()):
            if path.name.endswith(".tar.gz"):
                normalize_tar_gz(path, epoch)
            target = out / path.name
            shutil.move(path, target)
            results.append(target)
    return results


def image_archive(out: Path, base: str | None = None, archive: Path | None = None) -> tuple[Path, str]:
    """The controller image's OCI archive (built or taken from the cache) and its manifest digest."""
    source = archive or image.build(base)
    target = out / f"deliver-{image.version()}.oci.tar"
    if source.resolve() != target.resolve():
        shutil.copyfile(source, target)
    digest = image.manifest_digest(target)
    (out / f"deliver-{image.version()}.oci.digest").write_text(digest + "\n")
    return target, digest


def chart_package(out: Path, digest: str, epoch: int) -> Path:
    """``helm package`` of the chart with ``image.digest`` defaulting to ``digest``."""
    if not DIGEST.match(digest):
        raise ValueError(f"not an image digest: {digest!r}")
    with tempfile.TemporaryDirectory(prefix="deliver-chart-") as tmp:
        chart = Path(tmp) / CHART.name
        shutil.copytree(CHART, chart)
        values = chart / "values.yaml"
        text, count = re.subn(r'(?m)^(  digest: )""$', rf'\g<1>"{digest}"', values.read_text(), count=1)
        if count != 1:
            raise SystemExit(f'{values}: no `  digest: ""` line under image: to set')
        values.write_text(text)
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
        helm = subprocess.run(
            [str(helm_path()), "package", str(chart), "--destination", str(out)],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
    path = Path(helm.stdout.strip().rsplit(": ", 1)[-1])
    normalize_tar_gz(path, epoch)  # helm honours SOURCE_DATE_EPOCH; this also fixes order and modes
    return path


def image_site_packages(archive: Path, dest: Path) -> str:
    """The ``*.dist-info`` folders of the image's virtualenv (``/opt/deliver``), extracted into
    ``dest/lib/pythonX.Y/site-packages`` from the archive's layers; returns ``pythonX.Y``."""
    python = ""
    with tarfile.open(archive) as oci:
        index = json.load(oci.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(oci.extractfile("blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))  # type: ignore[arg-type]
        for layer in manifest["layers"]:
            blob = oci.extractfile("blobs/sha256/" + layer["digest"].split(":")[1])
            with tarfile.open(fileobj=blob, mode="r|*") as tar:
                for entry in tar:
                    m = VENV_SITE.match(entry.name.removeprefix("./"))
                    if m and entry.isfile():
                        python = m.group(1)
                        target = dest / "lib" / python / "site-packages" / m.group(2) / m.group(3)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(tar.extractfile(entry).read())  # type: ignore[union-attr]
    if not python:
        raise SystemExit(f"{archive}: no /opt/deliver virtualenv in the image")
    return python


def sbom(archive: Path, out: Path, epoch: int) -> Path:
    """A CycloneDX SBOM (JSON) of the Python packages in the image's virtualenv.

    ``cyclonedx-py environment`` reads an environment's package metadata through its interpreter: the
    image's dist-info folders are laid out as a virtualenv whose interpreter is this one (the same
    Python minor as the image's, checked), so nothing of this machine's packages is listed."""
    target = out / f"deliver-{image.version()}.cdx.json"
    with tempfile.TemporaryDirectory(prefix="deliver-sbom-") as tmp:
        venv = Path(tmp) / "venv"
        python = image_site_packages(archive, venv)
        here = f"python{sys.version_info.major}.{sys.version_info.minor}"
        if python != here:
            raise SystemExit(f"the image's virtualenv is {python}, this interpreter {here}: run with {python}")
        (venv / "bin").mkdir()
        (venv / "bin" / "python").symlink_to(sys.executable)
        home = Path(sys.base_prefix) / "bin"
        (venv / "pyvenv.cfg").write_text(f"home = {home}\ninclude-system-site-packages = false\n")
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
        cyclonedx = Path(sys.executable).with_name("cyclonedx-py")
        subprocess.run(
            [str(cyclonedx), "environment", "--pyproject", str(REPO_ROOT / "pyproject.toml"), "--output-reproducible",
             "--of", "JSON", "-o", str(target), str(venv / "bin" / "python")],
            env=env, check=True,
        )  # fmt: skip
    return target


LAUNCHER = """\
#!/bin/sh
# kubectl deliver: runs the `deliver` command of the {dist} wheel (deliver is Python; this plugin
# holds only this launcher). Install the CLI first: pip install '{dist}=={version}'
if ! command -v deliver >/dev/null 2>&1; then
  echo "kubectl deliver needs the deliver command: pip install '{dist}=={version}' (Python 3.11+)" >&2
  exit 127
fi
# The wheel's own kubectl-deliver, beside its deliver (not this launcher, which krew put on PATH):
# help and usage lines then say `kubectl deliver`.
plugin="$(dirname "$(command -v deliver)")/kubectl-deliver"
if [ -x "$plugin" ]; then
  exec "$plugin" "$@"
fi
exec deliver "$@"
"""


def krew_plugin(out: Path, epoch: int, url: str) -> tuple[Path, Path]:
    """The krew plugin archive (the launcher) and its manifest ``deliver.yaml``."""
    version, dist = image.version(), distribution()
    launcher = LAUNCHER.format(dist=dist, version=version).encode()
    archive = out / f"kubectl-deliver-{version}.tar.gz"
    info = tarfile.TarInfo("kubectl-deliver")
    info.size, info.mode = len(launcher), 0o755
    deterministic_tar_gz(iter([(info, launcher)]), archive, epoch)
    manifest = out / "deliver.yaml"
    base = url.format(version=version).rstrip("/")
    manifest.write_text(
        f"""\
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: deliver
spec:
  version: v{version}
  homepage: https://deliver.dev
  shortDescription: Progressive delivery (canary, blue-green) for plain Deployments
  description: |
    kubectl deliver drives and inspects progressive deliveries of plain apps/v1 Deployments
    annotated with deliver.dev/ keys: status, promote, abort, retry, undo, gate, lint.
    It needs the deliver controller in the cluster (the Helm chart of the same release).
  caveats: |
    deliver is written in Python: this plugin is a launcher that runs the `deliver` command.
    Install it first (Python 3.11+):
      pip install '{dist}=={version}'
    Then: kubectl deliver --help
  platforms:
    - selector:
        matchExpressions:
          - {{key: os, operator: In, values: [linux, darwin]}}
      uri: {base}/{archive.name}
      sha256: {sha256(archive)}
      bin: kubectl-deliver
      files:
        - from: kubectl-deliver
          to: .
"""
    )
    return archive, manifest


def checksums(out: Path) -> Path:
    """``SHA256SUMS`` of every other file in ``out`` (``sha256sum -c`` reads it)."""
    target = out / "SHA256SUMS"
    files = sorted(p for p in out.iterdir() if p.is_file() and p != target)
    target.write_text("".join(f"{sha256(p)}  {p.name}\n" for p in files))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--base", help="the image's base from a registry (default: the Debian base e2e/image.py makes)")
    parser.add_argument("--image-archive", type=Path, help="an OCI archive already built (default: make image's)")
    parser.add_argument("--url", default=KREW_URL, help="where the krew archive is served ({version} is replaced)")
    args = parser.parse_args(argv)
    started, epoch = time.monotonic(), source_date_epoch()
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    _log(f"SOURCE_DATE_EPOCH={epoch}; into {out}")
    wheel_and_sdist = python_dists(out, epoch)
    archive, digest = image_archive(out, args.base, args.image_archive)
    chart = chart_package(out, digest, epoch)
    bom = sbom(archive, out, epoch)
    krew = krew_plugin(out, epoch, args.url)
    pins = out / "constraints.txt"
    shutil.copyfile(REPO_ROOT / "constraints.txt", pins)
    sums = checksums(out)
    for path in [*wheel_and_sdist, archive, chart, bom, *krew, pins, sums]:
        print(f"{path.relative_to(out.parent) if path.is_relative_to(out.parent) else path}  {path.stat().st_size:,} B")
    print(f"image {image.reference()} {digest}; chart image.digest={digest}; {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
