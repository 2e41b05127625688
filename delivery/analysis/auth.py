"""Prometheus credentials without secrets in URLs, and the one URL redaction helper.

Credentials come from files (a mounted Secret, a projected ServiceAccount token), never from the
URL: a URL is printed in error messages that become verdict summaries, Events and dashboard text.
A token file is re-read when it changes (projected tokens rotate), so a rotation needs no restart.
Every message the Prometheus client raises goes through :meth:`PrometheusAuth.scrub`, which also
removes the secrets' values themselves, whatever echoed them.
"""

from __future__ import annotations

import base64
import os
import ssl
import threading
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

import httpx

REDACTED = "***"

# what to use instead of each part of a URL that carries a secret
USERINFO_HINT = (
    "use --prometheus-username with --prometheus-password-file (basic auth) or "
    "--prometheus-bearer-token-file (a token), not user:password@ in the URL"
)


def _host(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return host + (f":{parts.port}" if parts.port else "")


def redact_url(url: str) -> str:
    """``url`` fit to print: user info and query values replaced by ``***``, fragments dropped.

    ``https://user:pw@prom:9090/x?token=abc`` -> ``https://***@prom:9090/x?token=***``. Text that is
    not a URL at all is returned as ``***`` rather than risk printing a secret in it."""
    try:
        parts = urlsplit(url.strip())
        host = _host(parts)
    except ValueError:
        return REDACTED
    if not parts.scheme or not host:
        return REDACTED
    netloc = (f"{REDACTED}@" if "@" in parts.netloc else "") + host
    query = "&".join(f"{kv.split('=', 1)[0]}={REDACTED}" for kv in parts.query.split("&") if kv) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def has_userinfo(url: str) -> bool:
    try:
        return "@" in urlsplit(url.strip()).netloc
    except ValueError:
        return False


class _FileSecret:
    """A secret kept in a file, re-read when the file changes (inode, size or mtime)."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._value = ""

    def read(self) -> str:
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            with self._lock:
                if stamp != self._stamp:
                    value = self.path.read_text(encoding="utf-8").strip()
                    if not value:
                        raise ValueError("it is empty")
                    self._value, self._stamp = value, stamp
                return self._value
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise CredentialError(f"cannot read the Prometheus {self.what} file {self.path}: {reason}") from None

    @property
    def current(self) -> str:
        """The last value read ('' before the first), for scrubbing messages."""
        return self._value


class CredentialError(Exception):
    """A credential file cannot be read (mapped to MetricsUnavailable by the client)."""


@dataclass(frozen=True)
class PrometheusAuth:
    """How deliver authenticates to Prometheus. Every secret is a file path; nothing here is a secret itself
    except ``headers`` values, which are never printed."""

    bearer_token_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if self.bearer_token_file and (self.username or self.password_file):
            raise ValueError("use either a bearer token file or basic auth (username + password file), not both")
        if bool(self.username) != bool(self.password_file):
            raise ValueError("basic auth needs both --prometheus-username and --prometheus-password-file")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("a client certificate needs both --prometheus-cert-file and --prometheus-key-file")
        for name in self.headers:
            if not name or any(c in name for c in " :\r\n") or not name.isascii():
                raise ValueError(f"bad header name {name!r} (want NAME=VALUE)")
            if name.lower() == "authorization" and (self.bearer_token_file or self.username):
                raise ValueError("an Authorization header as well as a token or basic auth")
        for name, value in self.headers.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name}: the value has a line break")

    def verify(self) -> ssl.SSLContext | bool:
        """What httpx's ``verify`` gets: the system trust store, or a context with the CA and client cert files."""
        if not (self.ca_file or self.cert_file):
            return True
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            if self.cert_file and self.key_file:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the Prometheus TLS files: {exc}") from None
        return ctx

    def httpx_auth(self) -> httpx.Auth | None:
        if self.bearer_token_file:
            return _FileAuth(_FileSecret(self.bearer_token_file, "bearer token"), None)
        if self.username and self.password_file:
            return _FileAuth(_FileSecret(self.password_file, "password"), self.username)
        return None


class _FileAuth(httpx.Auth):
    """Bearer or basic auth from a file, read per request when the file changed."""

    def __init__(self, secret: _FileSecret, username: str | None) -> None:
        self.secret, self.username = secret, username

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        value = self.secret.read()
        if self.username is None:
            request.headers["Authorization"] = f"Bearer {value}"
        else:
            request.headers["Authorization"] = httpx.BasicAuth(self.username, value)._auth_header
        yield request


class Scrub:
    """Removes every secret value this client knows (token, password, header values) from a message."""

    def __init__(self, auth: PrometheusAuth, client_auth: httpx.Auth | None) -> None:
        self.auth, self.client_auth = auth, client_auth

    def secrets(self) -> list[str]:
        """Each secret as it could be echoed: itself, URL-quoted, and a basic auth header's base64."""
        raw = [v for v in self.auth.headers.values() if len(v) >= 4]
        if isinstance(self.client_auth, _FileAuth) and len(self.client_auth.secret.current) >= 4:
            value = self.client_auth.secret.current
            raw.append(value)
            if self.client_auth.username is not None:
                raw.append(base64.b64encode(f"{self.client_auth.username}:{value}".encode()).decode())
        out = set(raw) | {quote(v, safe="") for v in raw}
        return sorted(out, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self.secrets():
            text = text.replace(s, REDACTED)
        return text
