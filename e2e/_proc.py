"""Small process helpers shared by the local cluster and the services (Prometheus, Envoy).

Every process is started in its own session (so it outlives the ``python -m e2e.cluster up``
that started it) with stdout+stderr going to one log file. It is stopped by pid only, and only
after checking that the pid still runs the executable we started (a recycled pid is left alone).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class StartError(RuntimeError):
    """A component failed to start; the message names the component and its log file."""


def log_tail(log: Path, lines: int = 25) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@dataclass
class Proc:
    """One started process: its component name, pid, executable and log file."""

    name: str
    pid: int
    exe: str
    log: str

    def alive(self) -> bool:
        return pid_runs(self.pid, self.exe)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "exe": self.exe, "log": self.log}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Proc:
        return cls(name=str(d["name"]), pid=int(d["pid"]), exe=str(d["exe"]), log=str(d["log"]))  # type: ignore[arg-type]


def start(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Proc:
    exe = argv[0]
    if not Path(exe).exists():
        raise StartError(f"{name}: binary {exe} is missing (run `python -m e2e.binaries` / `make install`)")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(("# " + " ".join(argv) + "\n").encode())
        out.flush()
        popen = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    proc = Proc(name=name, pid=popen.pid, exe=os.path.realpath(exe), log=str(log))
    # Keep a reference so the child is reaped if it dies while we still run (no zombie that
    # would look alive to pid_runs).
    _CHILDREN[popen.pid] = popen
    return proc


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def pid_runs(pid: int, exe: str) -> bool:
    """True when ``pid`` is alive and runs ``exe`` (guards against recycled pids)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        target = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    target = target.removesuffix(" (deleted)")
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except OSError:
        return False
    return os.path.realpath(target) == os.path.realpath(exe)


def stop(proc: Proc, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; only if the pid still runs our executable."""
    if not proc.alive():
        _reap(proc.pid)
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(proc.pid)
        if not proc.alive():
            return
        time.sleep(0.05)
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and proc.alive():
        _reap(proc.pid)
        time.sleep(0.05)


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        child.poll()


def wait_until(check: Callable[[], bool], timeout: float, proc: Proc | None, what: str, interval: float = 0.1) -> None:
    """Poll ``check`` until true; fail early (naming the log) if ``proc`` dies."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # any failure just means "not yet"
            last_exc = exc
        if proc is not None and not proc.alive():
            raise StartError(
                f"{proc.name} exited while waiting for {what}; log: {proc.log}\n{log_tail(Path(proc.log))}"
            )
        time.sleep(interval)
    detail = f" (last error: {last_exc})" if last_exc else ""
    where = f"; log: {proc.log}\n{log_tail(Path(proc.log))}" if proc else ""
    raise StartError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{where}")
