"""Run the real deliver controller (``python -m delivery.cli run``) as a subprocess for e2e tests.

    with ControllerProcess(kubeconfig, namespace, log_dir=tmp_path) as ctl:
        ...            # ctl.kill() sends SIGKILL, ctl.restart() starts it again, ctl.log() reads its log

Used by every e2e test that needs the engine; the process is the same one users run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from e2e.cluster import REPO_ROOT


class ControllerProcess:
    def __init__(
        self,
        kubeconfig: Path | str,
        namespace: str | None,
        log_dir: Path,
        prometheus_url: str | None = None,
        extra_args: list[str] | None = None,
        name: str = "controller",
        egress_allow_cidr: str = "127.0.0.0/8",
        env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = str(kubeconfig)
        self.namespace = namespace
        self.log_path = Path(log_dir) / f"{name}.log"
        self.prometheus_url = prometheus_url
        self.extra_args = list(extra_args or [])
        self.egress_allow_cidr = egress_allow_cidr
        self.env = dict(env or {})  # e.g. POD_NAME, as the downward API gives the chart's pod
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "delivery.cli", "--kubeconfig", self.kubeconfig]
        if self.namespace:
            argv += ["-n", self.namespace]
        argv.append("run")
        if self.prometheus_url:
            argv += ["--prometheus-url", self.prometheus_url]
        if not self.namespace:
            argv.append("--all-namespaces")
        if "--metrics-addr" not in self.extra_args:
            argv += ["--metrics-addr", "127.0.0.1:0"]  # tests run several controllers side by side
        # The hook and notification receivers of the tests run on 127.0.0.1, which the controller's
        # egress policy refuses unless the operator allows it (docs/security.md): allow it as one would.
        # e2e/hostile.py allows only 127.0.0.1/32, so that 127.0.0.2 stands for a denied destination.
        argv += ["--egress-allow-cidr", self.egress_allow_cidr]
        return argv + self.extra_args

    def start(self) -> ControllerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.proc = subprocess.Popen(
            self.argv(), cwd=REPO_ROOT, stdout=log, stderr=log, env=env, start_new_session=True
        )
        log.close()
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no Lease release — the crash the engine must survive."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def restart(self) -> ControllerProcess:
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> ControllerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
