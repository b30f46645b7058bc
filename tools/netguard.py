"""The network guard every network tool goes through: which addresses may be contacted, and one
HTTP exchange under a single deadline.

Why a hand-written client on `http.client` rather than urllib, requests or httpx: the guard must
check the address that is *actually connected to*. Checking a host name and then letting a library
resolve it again leaves a DNS-rebinding gap (the second answer can be 127.0.0.1), and urllib also
honours HTTP_PROXY, which would connect somewhere else entirely. Here the name is resolved once,
every address it resolves to is checked, the socket connects to that checked IP, and the request
still carries the name in the Host header and the TLS SNI/certificate check. The maintained SSRF
wrapper for Python (`advocate`) is tied to requests and unreleased since 2020.

Every spelling of an address (127.1, 2130706433, 0x7f000001, [::ffff:127.0.0.1]) ends as the same
resolved IP, so checking the resolved IP covers them all; IPv6 forms that embed an IPv4 address
(mapped, NAT64, 6to4, Teredo) are checked on the embedded address too.

The allow-list (PLANEXEC_NET_ALLOW: host names, IPs or CIDRs, comma separated) is read from the
server's environment, never from a run's context, so a caller cannot widen it.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

ALLOW_ENV = "PLANEXEC_NET_ALLOW"
ALLOWED_SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="netguard-dns")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class NetRefused(Exception):
    """The guard refused a URL or an address; the message says why and what the operator can do."""


class NetFailed(Exception):
    """The exchange was allowed but failed (unreachable, reset, out of time)."""


@dataclass(frozen=True)
class AllowList:
    """Hosts and networks an operator opened on purpose, despite being internal."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        hosts: set[str] = set()
        networks = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    @classmethod
    def from_env(cls) -> AllowList:
        return cls.parse(os.environ.get(ALLOW_ENV, "").split(","))

    def allows(self, host: str, address: IPAddress) -> bool:
        if host.lower().rstrip(".") in self.hosts:
            return True
        return any(address in net for net in self.networks if net.version == address.version)


def forbidden_reason(address: IPAddress) -> str | None:
    """Why `address` is internal (loopback, private...), or None for a public address."""
    for candidate in _with_embedded(address):
        for label, flag in (
            ("unspecified", candidate.is_unspecified),
            ("loopback", candidate.is_loopback),
            ("link-local", candidate.is_link_local),
            ("multicast", candidate.is_multicast),
            ("private", candidate.is_private),
            ("reserved", candidate.is_reserved),
            # fec0::/10, deprecated but still routed inside some networks; Python's is_global
            # calls it global.
            ("site-local", getattr(candidate, "is_site_local", False)),
        ):
            if flag:
                return label
        if not candidate.is_global:
            return "not globally routable"
    return None


def _with_embedded(address: IPAddress) -> list[IPAddress]:
    """The address and any IPv4 address carried inside an IPv6 one."""
    found: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour]
        if address.teredo:
            embedded.append(address.teredo[1])
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        found += [a for a in embedded if a is not None]
    return found


def resolve_checked(host: str, port: int, allow: AllowList, deadline: float) -> IPAddress:
    """Resolve `host` once and return the address to connect to; refuse if *any* address it
    resolves to is internal and not allowed (a name mixing public and private answers is how a
    rebinding attack would pick its moment)."""
    remaining = deadline - time.monotonic()
    future = _RESOLVER.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=max(remaining, 0.001))
    except concurrent.futures.TimeoutError:
        raise NetFailed("timed out: the host name did not resolve in time") from None
    except socket.gaierror as exc:
        raise NetFailed(f"the host name does not resolve ({exc.strerror})") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if address not in addresses:
            addresses.append(address)
    for address in addresses:
        reason = forbidden_reason(address)
        if reason and not allow.allows(host, address):
            raise NetRefused(
                f"'{host}' resolves to {address}, a {reason} address; internal addresses are "
                f"refused. An operator can open it with {ALLOW_ENV}."
            )
    if not addresses:
        raise NetFailed("the host name resolved to no address")
    return addresses[0]


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of `url`, or NetRefused for other schemes or a missing host."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise NetRefused(
            f"only http:// and https:// URLs are allowed (got scheme '{parts.scheme or 'none'}')"
        )
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise NetRefused("the URL has an invalid port") from None
    if not parts.hostname:
        raise NetRefused("the URL has no host name")
    return scheme, parts.hostname, port


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    url: str
    headers: http.client.HTTPMessage
    body: bytes
    truncated: bool


class _PinnedConnection(http.client.HTTPSConnection):
    """HTTP(S) connection to an already checked IP; Host header and SNI carry the name."""

    def __init__(self, scheme: str, host: str, port: int, address: IPAddress, timeout: float):
        context = ssl.create_default_context() if scheme == "https" else None
        super().__init__(host, port, timeout=timeout, context=context)
        self._scheme = scheme
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self._address), self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._scheme == "https":
            self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


class _Watchdog:
    """Shuts the socket down at the deadline: per-read timeouts alone let a server that drips a
    byte at a time (in the headers or the body) hold a call for ever."""

    def __init__(self, deadline: float) -> None:
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0), self._fire)
        self._timer.daemon = True
        self._conn: _PinnedConnection | None = None
        self._sock: socket.socket | None = None
        self.fired = False

    def watch(self, conn: _PinnedConnection) -> None:
        self._conn = conn
        self._timer.start()

    def hold(self, sock: socket.socket | None) -> None:
        """Keep the connected socket: http.client drops `conn.sock` once it has read the headers
        of a response that ends when the connection closes (HTTP/1.0, `Connection: close`, no
        length), and the body is then read through a file over the same socket."""
        self._sock = sock

    def _fire(self) -> None:
        self.fired = True
        sock = self._sock or (self._conn.sock if self._conn is not None else None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


def exchange(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes | None,
    max_bytes: int,
    timeout_s: float,
    allow: AllowList,
    follow_redirects: bool,
) -> Response:
    """One request (plus redirects when `follow_redirects`) within `timeout_s` in all: resolve,
    check, connect, headers and body. Every hop is checked again."""
    deadline = time.monotonic() + timeout_s
    for hop in range(MAX_REDIRECTS + 1):
        try:
            response = _one_hop(method, url, headers, body, max_bytes, deadline, allow, timeout_s)
        except NetRefused as exc:
            if hop == 0:
                raise
            raise NetRefused(f"a redirect to '{url}' was refused: {exc}") from None
        location = response.headers.get("Location")
        if not (follow_redirects and response.status in (301, 302, 303, 307, 308) and location):
            return response
        url = urljoin(url, location)
        if response.status == 303 or (response.status in (301, 302) and method != "HEAD"):
            method, body = "GET", None
    raise NetFailed(f"more than {MAX_REDIRECTS} redirects")


def _one_hop(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    max_bytes: int,
    deadline: float,
    allow: AllowList,
    timeout_s: float,
) -> Response:
    scheme, host, port = check_url(url)
    address = resolve_checked(host, port, allow, deadline)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise NetFailed(f"timed out: no response within {timeout_s:g} s in all")
    conn = _PinnedConnection(scheme, host, port, address, timeout=remaining)
    watchdog = _Watchdog(deadline)
    watchdog.watch(conn)
    raw: http.client.HTTPResponse | None = None
    try:
        conn.request(method, target, body=body, headers=headers)
        watchdog.hold(conn.sock)
        raw = conn.getresponse()
        chunks: list[bytes] = []
        size = 0
        # +1 byte tells "exactly at the cap" apart from "cut off".
        while size <= max_bytes:
            chunk = raw.read1(min(65536, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if watchdog.fired:  # a shut-down socket reads as a clean end of the body
            raise NetFailed(f"timed out: no complete response within {timeout_s:g} s in all")
        data = b"".join(chunks)
        return Response(
            raw.status, raw.reason, url, raw.headers, data[:max_bytes], len(data) > max_bytes
        )
    except (OSError, http.client.HTTPException) as exc:
        if watchdog.fired or time.monotonic() >= deadline:
            message = f"timed out: no complete response within {timeout_s:g} s in all"
            raise NetFailed(message) from None
        if isinstance(exc, ssl.SSLCertVerificationError):
            raise NetFailed(f"the TLS certificate was refused ({exc.verify_message})") from None
        raise NetFailed(str(exc) or type(exc).__name__) from None
    finally:
        watchdog.cancel()
        if raw is not None:
            raw.close()  # a response read to its connection's end holds that socket, not conn
        conn.close()
