"""The release installs on the local cluster by the commands docs/release.md gives.

``make release``'s command (``python -m e2e.release``; the image comes from e2e/image.py's cache,
built if the sources changed) into a temporary directory; its checksums verify; the packaged chart
is installed with ``--set image.repository=... --set image.digest=$(cat deliver-VERSION.oci.digest)``
as documented, and its pod names ``repository@digest``; then the release's image archive runs as
that pod's controller container (e2e/test_image.py's way: unpacked, chroot, the chart's user,
command and ServiceAccount token), leads and delivers a canary. No registry runs here: the push
(skopeo, crane, docker) is the one documented step this test does not run; the digest it keeps is
the archive's manifest digest, which the chart is pinned to.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.cluster import REPO_ROOT
from e2e.conftest import RunningCluster
from e2e.helpers import Kube
from e2e.image import version
from e2e.test_image import run_image

pytestmark = pytest.mark.e2e

REGISTRY = "registry.example.com/deliver"  # docs/release.md's example repository


def test_the_release_installs_by_the_documented_commands(
    cluster: RunningCluster, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    out = tmp_path / "release"
    made = subprocess.run(
        [sys.executable, "-m", "e2e.release", "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stdout + made.stderr[-3000:]
    v = version()
    checked = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    digest = (out / f"deliver-{v}.oci.digest").read_text().strip()
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    try:
        run_image(
            cluster, kube, namespace, tmp_path, out / f"deliver-{v}.oci.tar", rootfs,
            chart=out / f"deliver-{v}.tgz",
            sets=(f"image.repository={REGISTRY}", f"image.digest={digest}"),
            image=f"{REGISTRY}@{digest}",
        )  # fmt: skip
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)  # ~500 MB unpacked
