"""Build the controller image as an OCI archive without a container daemon: ``make image``.

    python -m e2e.image                  # dist/deliver-<version>.oci.tar (cached build)
    python -m e2e.image --base docker.io/library/python:3.11-slim-bookworm   # a registry base

How, and why this way: this machine (and CI) has no Docker engine. ``buildah`` (Debian package)
builds the Dockerfile as root with ``--isolation chroot`` (no runc/crun, no namespaces to set up)
and ``vfs`` storage (no overlay mounts or fuse needed), then pushes the image to an
``oci-archive``. No registry base is reachable here, so unless ``--base`` is given the base is made
from Debian packages: ``mmdebstrap`` (bookworm, ``essential`` variant + python3, python3-venv,
ca-certificates; no docs/man/locales) into a tarball that buildah imports as
``localhost/deliver-base``. The tarball, buildah's storage and the finished archive are cached in
``$DELIVER_CACHE/image`` (default ``~/.cache/deliver/image``), the archive keyed by a hash of every
input (Dockerfile, .dockerignore, pyproject.toml, constraints.txt, README.md, delivery/, strategies/, the base), so
``make image`` and e2e/test_image.py rebuild only when one changed. Timings: docs/install.md.

Pinning: ``--base`` should name a registry base by digest (``python:3.11-slim-bookworm@sha256:...``);
the Debian base made here is pinned by ``DELIVER_DEBIAN_SNAPSHOT`` (snapshot.debian.org) and, either
way, its package versions are written beside the archive; the archive's manifest digest is printed
for the chart's ``image.digest``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path
from typing import Any

from e2e.binaries import cache_root
from e2e.cluster import REPO_ROOT

REPOSITORY = "ghcr.io/deliver-dev/deliver"  # charts/deliver/values.yaml image.repository
SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# Pinning the Debian base (issue 24). The live mirrors above move: two builds a week apart get other
# package versions. DELIVER_DEBIAN_SNAPSHOT=20261201T000000Z builds from snapshot.debian.org at that
# instant instead: the same packages every time. Either way the versions that went in are recorded
# (``packages``: dist/deliver-<version>.packages.txt) and the archive's manifest digest printed, to be
# pinned as the chart's image.digest.
SNAPSHOT_ENV = "DELIVER_DEBIAN_SNAPSHOT"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "libstdc++6")  # numpy's wheels need libstdc++
EXCLUDED = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*")
INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml", "constraints.txt", "README.md")
SOURCES = ("delivery", "strategies")


def version() -> str:
    return str(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"])


def reference() -> str:
    """The image name and tag `make image` produces: the chart's default image."""
    return f"{REPOSITORY}:{version()}"


def cache_dir() -> Path:
    path = cache_root() / "image"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _log(message: str) -> None:
    print(f"[image {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, **kwargs)


def buildah(*args: str, capture: bool = False, quiet: bool = False) -> str:
    """buildah with this project's own storage (vfs) under the cache, not the machine's."""
    store = cache_dir()
    argv = ["buildah", "--root", str(store / "storage"), "--runroot", str(store / "runroot"), "--storage-driver", "vfs"]
    out = _run(
        [*argv, *args],
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if quiet else None,
    )
    return (out.stdout or "").strip()


def mirrors(snapshot: str | None = None) -> tuple[str, ...]:
    """The APT sources of the base: the live mirrors, or snapshot.debian.org at ``snapshot``
    (``YYYYMMDDTHHMMSSZ``; default: $DELIVER_DEBIAN_SNAPSHOT)."""
    snapshot = os.environ.get(SNAPSHOT_ENV, "") if snapshot is None else snapshot
    if not snapshot:
        return MIRRORS
    if not (len(snapshot) == 16 and snapshot[8] == "T" and snapshot.endswith("Z") and snapshot[:8].isdigit()):
        raise SystemExit(f"{SNAPSHOT_ENV} must look like 20261201T000000Z, not {snapshot!r}")
    archive = "deb [check-valid-until=no] http://snapshot.debian.org/archive"
    return (
        f"{archive}/debian/{snapshot} {SUITE} main",
        f"{archive}/debian-security/{snapshot} {SUITE}-security main",
    )


def _recipe() -> str:
    return json.dumps([SUITE, mirrors(), BASE_PACKAGES, EXCLUDED])


def packages(tarball: Path) -> dict[str, str]:
    """The Debian packages (name -> version) installed in a root filesystem tarball, from its dpkg
    status: what the base was really made of, whichever mirror it came from."""
    with tarfile.open(tarball) as tar:
        member = next((m for m in tar if m.name.lstrip("./") == "var/lib/dpkg/status"), None)
        if member is None:
            return {}
        text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
    found: dict[str, str] = {}
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        if "Package" in fields and "installed" in fields.get("Status", "").split():
            found[fields["Package"]] = fields.get("Version", "")
    return dict(sorted(found.items()))


def manifest_digest(archive: Path) -> str:
    """The OCI archive's image manifest digest (``sha256:...``): what ``image.digest`` pins once the
    archive is copied to a registry as is (``skopeo copy oci-archive:... docker://...``)."""
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    return str(index["manifests"][0]["digest"])


def base_tarball() -> Path:
    """The Debian root filesystem the default base is made of (mmdebstrap, cached)."""
    digest = hashlib.sha256(_recipe().encode()).hexdigest()[:12]
    target = cache_dir() / f"base-{SUITE}-{digest}.tar"
    if target.exists():
        return target
    if not shutil.which("mmdebstrap"):
        raise SystemExit("mmdebstrap is needed for the Debian base: apt-get install --no-install-recommends mmdebstrap")
    _log(f"making the Debian {SUITE} base with mmdebstrap (once; a few minutes)")
    argv = ["mmdebstrap", "--variant=essential", "--include=" + ",".join(BASE_PACKAGES)]
    argv += [f"--dpkgopt=path-exclude={p}" for p in EXCLUDED] + ["--dpkgopt=path-include=/usr/share/doc/*/copyright"]
    _run([*argv, SUITE, str(target) + ".tmp", *mirrors()])
    os.replace(str(target) + ".tmp", target)
    return target


def base_image() -> str:
    """``localhost/deliver-base:<suite>-<hash>`` in buildah's storage, imported from the tarball."""
    tarball = base_tarball()
    name = f"localhost/deliver-base:{tarball.stem.removeprefix('base-')}"
    try:
        buildah("inspect", "--type", "image", name, capture=True, quiet=True)
        return name
    except subprocess.CalledProcessError:
        pass
    _log(f"importing {tarball.name} as {name}")
    ctr = buildah("from", "scratch", capture=True)
    try:
        buildah("add", ctr, str(tarball), "/")
        path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        buildah("config", "--env", path, "--env", "LANG=C.UTF-8", "--cmd", "/bin/sh", ctr)
        buildah("commit", "--rm", ctr, name)
    except BaseException:
        buildah("rm", ctr)
        raise
    return name


def inputs_digest(base: str) -> str:
    """A hash of everything the image is built from."""
    digest = hashlib.sha256(base.encode())
    files = [REPO_ROOT / name for name in INPUTS]
    for source in SOURCES:
        files += sorted(p for p in (REPO_ROOT / source).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def pip_settings() -> list[str]:
    """buildah arguments that hand this machine's pip index and CA bundle to the build stage."""
    args: list[str] = []
    cert = os.environ.get("PIP_CERT")
    if not cert:
        found = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.cert"], capture_output=True, text=True
        )
        cert = found.stdout.strip() if found.returncode == 0 else ""
    if cert and Path(cert).is_file():
        args += [
            "--volume",
            f"{Path(cert).resolve()}:/run/build-ca.crt:ro",
            "--build-arg",
            "PIP_CERT=/run/build-ca.crt",
        ]
    if os.environ.get("PIP_INDEX_URL"):
        args += ["--build-arg", f"PIP_INDEX_URL={os.environ['PIP_INDEX_URL']}"]
    return args


def build(base: str | None = None) -> Path:
    """The image as an OCI archive (cached by the hash of its inputs); builds it when missing."""
    base_ref = base or base_image()
    archive = cache_dir() / f"deliver-{version()}-{inputs_digest(base_ref)}.oci.tar"
    if archive.exists():
        _log(f"cached: {archive}")
        return archive
    _log(f"building {reference()} on {base_ref} (buildah, chroot isolation, vfs storage)")
    started = time.monotonic()
    buildah(
        "bud",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--layers=false",
        "--build-arg",
        f"BASE={base_ref}",
        *pip_settings(),
        "--tag",
        reference(),
        "--file",
        str(REPO_ROOT / "Dockerfile"),
        str(REPO_ROOT),
    )
    tmp = Path(str(archive) + ".tmp")
    tmp.unlink(missing_ok=True)
    buildah("push", "--compression-format", "gzip", reference(), f"oci-archive:{tmp}:{reference()}")
    os.replace(tmp, archive)
    buildah("rmi", "--prune")  # the build stage's intermediate image; the base and the result stay
    for stale in cache_dir().glob("deliver-*.oci.tar"):
        if stale != archive:
            stale.unlink()  # archives of older sources: the cache keeps one
    _log(f"built in {time.monotonic() - started:.0f}s: {archive}")
    return archive


def sizes(archive: Path) -> dict[str, int]:
    """Bytes of the image: its compressed layers (what a registry stores and a node pulls) and unpacked."""
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(tar.extractfile(f"blobs/sha256/{digest}"))  # type: ignore[arg-type]
        compressed = sum(layer["size"] for layer in manifest["layers"])
        unpacked = 0
        for layer in manifest["layers"]:
            blob = tar.extractfile(f"blobs/sha256/{layer['digest'].split(':')[1]}")
            with tarfile.open(fileobj=blob, mode="r|*") as inner:
                unpacked += sum(member.size for member in inner if member.isfile())
    return {"compressed": compressed, "unpacked": unpacked}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="a base image from a registry (default: a Debian base made here)")
    parser.add_argument("--out", default=str(REPO_ROOT / "dist" / f"deliver-{version()}.oci.tar"))
    args = parser.parse_args()
    if not shutil.which("buildah"):
        raise SystemExit("buildah is needed: apt-get install --no-install-recommends buildah")
    started = time.monotonic()
    archive = build(args.base)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    shutil.copyfile(archive, out)
    size = sizes(archive)
    if args.base is None:  # the Debian base made here: record what it was made of
        listed = packages(base_tarball())
        record = out.with_name(out.name.removesuffix(".oci.tar") + ".packages.txt")
        record.write_text(
            f"# Debian {SUITE} base of {reference()}; sources: {'; '.join(mirrors())}\n"
            + "".join(f"{name}={ver}\n" for name, ver in listed.items())
        )
        print(f"{record}: {len(listed)} Debian packages, versions recorded")
    print(
        f"{out}: {reference()} — {size['compressed'] / 1e6:.1f} MB compressed layers, "
        f"{size['unpacked'] / 1e6:.1f} MB unpacked ({time.monotonic() - started:.0f}s); "
        f"manifest digest {manifest_digest(archive)} (the chart's image.digest once pushed as is)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
