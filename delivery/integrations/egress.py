"""Outbound calls to tenants' URLs (hooks, notifications): the operator's egress policy, one
wall-clock deadline per call and capped answers.

Every hook and notification request goes through :func:`post`:

* **The policy is checked on the address connected to.** The host is resolved once, every address
  it resolves to is checked (:meth:`EgressPolicy.refusal`), and the socket connects to a checked
  address: no second lookup, no DNS-rebinding gap. TLS keeps the URL's host for SNI and certificate
  checks and the ``Host`` header is the URL's (only the TCP connect is ours: an httpcore network
  backend). A refused destination fails before any packet leaves. No proxy from the environment,
  no redirect followed.
* **One deadline for the whole call**: resolving, connecting, TLS, writing and reading the answer
  share it, so a server that drips bytes cannot hold a call past it (and such a call is no answer).
* **Bounded answers**: at most ``max_response_bytes`` of the body are read (raw, never decompressed),
  then the connection is closed; the body is never kept or copied anywhere.
* **Uniform outcomes**: a tenant sees ``HTTP <status>``, ``no answer within <deadline>`` (refused,
  reset, timed out, TLS or DNS failure alike) or the policy's refusal. What really happened goes to
  the controller's log only, with the URL cut to ``scheme://host[:port]``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from delivery.errors import EgressDenied

log = logging.getLogger("deliver.egress")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_RESPONSE_BYTES = 64 * 1024  # read of an answer's body, at most (then the connection is closed)
MAX_REQUEST_BYTES = 64 * 1024  # a hook or notification body, at most
# Denied unless the operator allows the host by name or the address by CIDR: private ranges, where
# nodes, in-cluster admin services and cloud-internal endpoints live.
PRIVATE: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


def _special(ip: IPAddress) -> bool:
    """Loopback, link-local (the cloud metadata address), unspecified, multicast, reserved."""
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip.is_reserved


def origin(url: str) -> str:
    """``scheme://host[:port]``: how logs name a URL (its path and query may hold a token)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")


@dataclass(frozen=True)
class EgressPolicy:
    """Where the controller may send hook calls and notifications (``deliver run --egress-*``).

    An address is refused when it is loopback, link-local, unspecified, multicast or reserved
    (unless inside an allowed CIDR), or when it is private or in a denied CIDR (the cluster's service
    and pod ranges) unless inside an allowed CIDR or its host is allowed by name. Any other address is
    allowed when ``public`` is on (the default), else only allowed hosts and CIDRs are.
    """

    allow_hosts: tuple[str, ...] = ()  # "hooks.example.com" or "*.ci.svc" (any name below)
    allow_cidrs: tuple[IPNetwork, ...] = ()
    deny_cidrs: tuple[IPNetwork, ...] = ()
    public: bool = True

    @classmethod
    def parse(
        cls,
        allow_hosts: Iterable[str] = (),
        allow_cidrs: Iterable[str] = (),
        deny_cidrs: Iterable[str] = (),
        public: bool = True,
    ) -> EgressPolicy:
        """From flag values; ValueError names the bad one."""
        hosts = []
        for h in allow_hosts:
            name = h.strip().lower().rstrip(".")
            bare = name[2:] if name.startswith("*.") else name
            if not bare or any(c in bare for c in "/:@ *") or bare.startswith("."):
                raise ValueError(f"{h!r} is not a host name or *.domain (no scheme, port or path)")
            hosts.append(name)

        def nets(values: Iterable[str]) -> tuple[IPNetwork, ...]:
            out = []
            for v in values:
                try:
                    out.append(ipaddress.ip_network(v.strip(), strict=False))
                except ValueError:
                    raise ValueError(f"{v!r} is not a CIDR such as 10.96.0.0/12 or fd00::/8") from None
            return tuple(out)

        return cls(tuple(hosts), nets(allow_cidrs), nets(deny_cidrs), public)

    def allows_host(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        for pattern in self.allow_hosts:
            if pattern.startswith("*.") and name.endswith(pattern[1:]):
                return True
            if name == pattern:
                return True
        return False

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why connecting to ``address`` (for ``host``) is refused, or None when it is allowed."""
        ip: IPAddress = address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in n for n in self.allow_cidrs):
            return None
        if _special(ip):
            return "a loopback, link-local, unspecified, multicast or reserved address"
        if self.allows_host(host):
            return None
        if any(ip in n for n in self.deny_cidrs):
            return "an address in a denied cluster range"
        if any(ip in n for n in PRIVATE):
            return "a private address"
        if not self.public:
            return "not an allowed destination"
        return None


# Tests and the e2e harness run their receivers on 127.0.0.1: they allow it like an operator would.
LOOPBACK = EgressPolicy.parse(allow_cidrs=("127.0.0.0/8", "::1/128"))

_SSL = ssl.create_default_context()  # one context for every call (creating one costs milliseconds)


def _resolve(host: str, port: int, seconds: float) -> list[IPAddress]:
    """The addresses of ``host``, within ``seconds`` (getaddrinfo has no timeout of its own: a thread)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    found: list[Any] = []
    failed: list[BaseException] = []

    def lookup() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failed.append(exc)

    t = threading.Thread(target=lookup, name="egress-dns", daemon=True)
    t.start()
    t.join(max(0.0, seconds))
    if t.is_alive():
        raise httpcore.ConnectTimeout(f"resolving {host} took longer than the deadline")
    if failed or not found:
        raise httpcore.ConnectError(f"cannot resolve {host}: {failed[0] if failed else 'no address'}")
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in found:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses


class _DeadlineStream(httpcore.NetworkStream):
    """A stream whose every read and write waits at most until the call's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the call's deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    """Resolve once, check every address against the policy, connect to a checked one, by the deadline."""

    def __init__(self, policy: EgressPolicy, deadline: float) -> None:
        self.policy = policy
        self.deadline = deadline

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the call's deadline passed")
        return left

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = _resolve(host, port, self._left())
        for ip in addresses:
            if (why := self.policy.refusal(host, ip)) is not None:
                raise EgressDenied(host, why)
        last: Exception | None = None
        for ip in addresses:
            try:
                stream = super().connect_tcp(
                    str(ip), port, min(timeout or 1e9, self._left()), local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            return _DeadlineStream(stream, self.deadline)
        raise last if last is not None else httpcore.ConnectError(f"no address for {host}")

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise EgressDenied(path, "a unix socket")


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, policy: EgressPolicy, deadline: float) -> None:
        super().__init__(verify=_SSL, trust_env=False, retries=0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=_SSL,
            max_connections=1,
            http1=True,
            http2=False,
            network_backend=_GuardedBackend(policy, deadline),
        )


@dataclass(frozen=True)
class Answer:
    """One call's outcome: ``outcome`` is what a tenant may see (Events, records, notifications);
    ``detail`` is for the controller's log only."""

    ok: bool
    outcome: str
    status: int | None = None
    detail: str = ""
    seconds: float = 0.0
    denied: bool = field(default=False)


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    policy: EgressPolicy,
    deadline: float,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> Answer:
    """POST ``body`` to ``url`` within ``deadline`` seconds in all; 2xx (its body read up to the cap,
    by the deadline) is ok. Never raises for what the receiver does."""
    started = time.monotonic()
    words = f"no answer within {deadline:g}s"
    if len(body) > MAX_REQUEST_BYTES:
        return Answer(False, "request too large", detail=f"{len(body)} bytes > {MAX_REQUEST_BYTES}")
    transport = _GuardedTransport(policy, started + deadline)
    try:
        with httpx.Client(transport=transport, timeout=deadline, follow_redirects=False, trust_env=False) as client:
            with client.stream("POST", url, content=body, headers=headers) as response:
                read = 0
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read >= max_response_bytes:
                        break
                status = response.status_code
    except EgressDenied as exc:
        log.warning("outbound call refused by the egress policy", extra={"target": origin(url), "why": exc.why})
        return Answer(False, str(exc), detail=exc.why, denied=True)
    except httpx.HTTPError as exc:
        took = time.monotonic() - started
        detail = f"{type(exc).__name__}: {exc}".replace(url, origin(url))[:300]  # a path may hold a token
        return Answer(False, words, detail=detail, seconds=took)
    took = time.monotonic() - started
    return Answer(200 <= status < 300, f"HTTP {status}", status, f"HTTP {status}, {read} bytes read", took)


__all__ = ["LOOPBACK", "MAX_REQUEST_BYTES", "MAX_RESPONSE_BYTES", "Answer", "EgressPolicy", "origin", "post"]
