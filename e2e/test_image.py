"""The built controller image runs as the chart's Deployment would, and delivers a canary.

``make image``'s OCI archive (e2e/image.py; built here if the cache lacks one for the current
sources) is unpacked layer by layer into a root filesystem. The chart is installed (namespaced,
0 replicas: kwok runs no containers), and the controller container is run from the unpacked image
the way a kubelet would run the chart's pod: the chart's command, args and env, the user of its
securityContext (65532), a read-only root filesystem with a tmpfs on /tmp, and the chart's
ServiceAccount token mounted at /var/run/secrets/kubernetes.io/serviceaccount (the in-cluster
credentials, the only ones it has). Isolation: a mount namespace and chroot (``unshare``), no
container runtime. It must elect itself leader and complete a canary.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from kubernetes import client

from e2e.binaries import helm_path
from e2e.cluster import REPO_ROOT
from e2e.conftest import RunningCluster
from e2e.controller import ControllerProcess
from e2e.helpers import Kube, canary, images, set_image, wait_for, wait_phase, wait_stable
from e2e.image import build, reference

pytestmark = pytest.mark.e2e

CHART = REPO_ROOT / "charts" / "deliver"
SA_DIR = "var/run/secrets/kubernetes.io/serviceaccount"


def unpack(archive: Path, rootfs: Path) -> dict[str, object]:
    """Apply the image's layers in order (OCI whiteouts honoured); returns the image config."""
    with tarfile.open(archive) as oci:

        def read(name: str) -> bytes:
            member = oci.extractfile(name)
            assert member is not None, name
            return member.read()

        def blob(digest: str) -> bytes:
            return read("blobs/sha256/" + digest.split(":")[1])

        index = json.loads(read("index.json"))
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        for layer in manifest["layers"]:
            member = oci.extractfile("blobs/sha256/" + layer["digest"].split(":")[1])
            with tarfile.open(fileobj=member, mode="r|*") as tar:
                for entry in tar:
                    path = Path(entry.name)
                    if path.name.startswith(".wh."):
                        parent = inside(rootfs, rootfs / path.parent)
                        doomed = (
                            list(parent.iterdir())
                            if path.name == ".wh..wh..opq"
                            else [parent / path.name.removeprefix(".wh.")]
                        )
                        for target in doomed:
                            if target.is_dir() and not target.is_symlink():
                                shutil.rmtree(target)
                            else:
                                target.unlink(missing_ok=True)
                        continue
                    # "tar" filter: nothing lands outside rootfs, also through the image's absolute
                    # symlinks (Debian's /var/run -> /run); setuid bits are dropped
                    tar.extract(entry, rootfs, filter="tar")
    return config


def inside(rootfs: Path, path: Path) -> Path:
    """``path``, resolved, if it lies in ``rootfs`` (never a path of this machine's)."""
    resolved = path.resolve()
    assert resolved.is_relative_to(rootfs.resolve()), (path, resolved)
    return resolved


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ImageController(ControllerProcess):
    """The chart's controller container, run from the unpacked image (see the module docstring)."""

    def __init__(self, rootfs: Path, user: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        super().__init__("", None, log_dir, name="image-controller")
        self.rootfs, self.user, self.command, self.env = rootfs, user, command, env

    def argv(self) -> list[str]:
        r = str(self.rootfs)
        script = (
            f"mount --bind {r} {r} && mount -o remount,bind,ro {r} && "
            f"mount -t tmpfs -o size=64m,mode=1777 tmpfs {r}/tmp && mount -t proc proc {r}/proc && "
            f'exec chroot --userspec={self.user} {r} "$@"'
        )
        return ["unshare", "--mount", "--propagation", "private", "--fork", "--kill-child=SIGTERM",
                "sh", "-c", script, "container", *self.command]  # fmt: skip

    def start(self) -> ImageController:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log, env=self.env, start_new_session=True)
        self.starts += 1
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        return super().stop(timeout)

    def container_pids(self) -> list[int]:
        """Processes of this run whose executable lies in the unpacked image."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.getpgid(int(entry.name)) == self.proc.pid and os.readlink(entry / "exe").startswith(  # type: ignore[union-attr]
                        str(self.rootfs)
                    ):
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found


def test_the_image_runs_the_chart_controller_and_delivers_a_canary(
    cluster: RunningCluster, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    archive = build()  # cached by the hash of its inputs (e2e/image.py)
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    try:
        run_image(cluster, kube, ns, tmp_path, archive, rootfs)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)  # ~500 MB unpacked


def run_image(
    cluster: RunningCluster,
    kube: Kube,
    ns: str,
    tmp_path: Path,
    archive: Path,
    rootfs: Path,
    chart: Path = CHART,
    sets: tuple[str, ...] = (),
    image: str | None = None,
) -> None:
    """Install ``chart`` (with ``sets``; its pod must name ``image``, default: what make image
    builds) and run ``archive`` as its controller container."""
    config = unpack(archive, rootfs)["config"]
    assert isinstance(config, dict)
    assert config["User"] == "65532:65532" and config["Entrypoint"] == ["deliver"]
    assert not list(rootfs.glob("usr/bin/*gcc*")) and not list(rootfs.glob("usr/bin/cc"))  # no compilers

    # the chart, with its default image (what make image produces) unless `sets` say otherwise,
    # namespaced, metrics on a free port
    port = free_port()
    home = tmp_path / "helm"
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig), HELM_CACHE_HOME=str(home / "c"),
               HELM_CONFIG_HOME=str(home / "f"), HELM_DATA_HOME=str(home / "d"))  # fmt: skip
    r = subprocess.run(
        [str(helm_path()), "install", "rel", str(chart), "-n", ns, "--set", "replicaCount=0",
         "--set", "watch.scope=namespaced", "--set", f"metrics.port={port}", "--set", "holdPolicy.install=false",
         *[arg for s in sets for arg in ("--set", s)]],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    pod = kube.apps.read_namespaced_deployment("rel-deliver", ns).spec.template.spec
    container = pod.containers[0]
    assert container.image == (image or reference())
    assert container.security_context.read_only_root_filesystem is True

    # the pod's ServiceAccount mount: a token for the chart's ServiceAccount, the CA, the namespace
    token = kube.core.create_namespaced_service_account_token(
        "rel-deliver", ns, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    ).status.token
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())["clusters"][0]["cluster"]
    if "certificate-authority-data" in admin:
        ca = base64.b64decode(admin["certificate-authority-data"])
    else:
        ca_path = Path(admin["certificate-authority"])
        ca = (ca_path if ca_path.is_absolute() else Path(cluster.kubeconfig).parent / ca_path).read_bytes()
    # /var/run is a symlink to /run in Debian: resolve it inside the image, never on this machine
    var_run = rootfs / "var" / "run"
    sa = (rootfs / "run" if var_run.is_symlink() else var_run) / SA_DIR.removeprefix("var/run/")
    sa.mkdir(parents=True)
    sa = inside(rootfs, sa)
    (sa / "token").write_text(token)
    (sa / "ca.crt").write_bytes(ca)
    (sa / "namespace").write_text(ns)
    server = urlparse(admin["server"])

    # the container's environment: the image's, the chart's, and what a kubelet adds
    env_vars = dict(item.split("=", 1) for item in config.get("Env", []))  # type: ignore[union-attr]
    for var in container.env:
        if var.value_from is not None:
            env_vars[var.name] = {"metadata.name": "rel-deliver-0", "metadata.namespace": ns}[
                var.value_from.field_ref.field_path
            ]
        else:
            env_vars[var.name] = var.value
    env_vars.update(KUBERNETES_SERVICE_HOST=str(server.hostname), KUBERNETES_SERVICE_PORT=str(server.port), HOME="/tmp")
    user = f"{pod.security_context.run_as_user}:{pod.security_context.run_as_group}"
    command = [*container.command, *container.args]

    with ImageController(rootfs, user, command, env_vars, tmp_path) as ctl:
        wait_for(lambda: "became leader" in ctl.log(), 60, "the image's controller leads", describe=ctl.log)
        pids = ctl.container_pids()
        assert pids, "no process runs the image's executable"
        for pid in pids:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
            assert uids == ["65532"] * 4, (pid, uids)  # real, effective, saved, filesystem
            mounts = {
                line.split()[4]: line.split()[5] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
            }
            assert mounts["/"].split(",")[0] == "ro" and mounts["/tmp"].split(",")[0] == "rw", mounts
        kube.apps.create_namespaced_deployment(ns, canary("web", "50,100"))
        wait_stable(kube, ns, "web", ctl)
        set_image(kube.apps, ns, "web", "example.com/web:v2")
        wait_phase(kube, ns, "web", "Succeeded", timeout=90, ctl=ctl)
        assert images(kube, ns, "web") == {"example.com/web:v2"}
        log = ctl.log()
        assert "forbidden" not in log.lower() and "Traceback" not in log, log[-3000:]
    assert ctl.proc is not None and ctl.proc.returncode == 0, ctl.log()[-2000:]  # SIGTERM: a clean exit
