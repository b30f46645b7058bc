"""The network guard against real sockets on 127.0.0.x: internal addresses in every spelling are
refused before any byte is sent, redirects are checked again, the allow-list opens exactly what it
names, one deadline covers a server dripping its headers, and the idempotency key is sent."""

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from langchain_core.tools import ToolException

from tools.http import make_http_tools
from tools.netguard import AllowList, forbidden_reason
from tools.settings import ToolSettings
from tools.step_context import StepIdentity, ToolCallIdentity, calling_tool


@dataclass
class Recorder:
    requests: list[dict] = field(default_factory=list)


def _server(
    host: str, recorder: Recorder, redirect_to: str = "", port: int = 0
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            recorder.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": self.rfile.read(length) if length else b"",
                }
            )
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"secret"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 - fixed by http.server

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)


@pytest.fixture
def local() -> Iterator[tuple[str, int, Recorder]]:
    recorder = Recorder()
    httpd = _server("127.0.0.1", recorder)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield "127.0.0.1", httpd.server_address[1], recorder
    httpd.shutdown()
    httpd.server_close()


def _tools(tmp_path: Path, allow: list[str], timeout: float = 3.0):
    settings = ToolSettings(
        workspace=tmp_path, http_timeout_s=timeout, net_allow=AllowList.parse(allow)
    )
    return {t.name: t for t in make_http_tools(settings)}


SPELLINGS = [
    "127.0.0.1",
    "localhost",
    "[::1]",
    "0.0.0.0",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
]


@pytest.mark.parametrize("host", SPELLINGS)
def test_every_spelling_of_loopback_is_refused_before_connecting(
    tmp_path: Path, local, host: str
) -> None:
    _, port, recorder = local
    url = f"http://{host}:{port}/"
    tools = _tools(tmp_path, allow=[])
    calls = (("http_get", {"url": url}), ("http_request", {"method": "POST", "url": url}))
    for name, args in calls:
        with pytest.raises(ToolException) as info:
            tools[name].invoke(args)
        assert f"{name} refused '{url}'" in str(info.value)
        assert "PLANEXEC_NET_ALLOW" in str(info.value)
    assert recorder.requests == []  # nothing reached the server


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.5.4", "private"),
        ("100.64.0.1", "not globally routable"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private"),
        ("255.255.255.255", "private"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fec0::1", "site-local"),
        ("ff0e::1", "multicast"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "reserved"),  # NAT64 of 127.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_classes(address: str, reason: str | None) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) == reason


def test_allow_list_opens_exactly_what_it_names(tmp_path: Path, local) -> None:
    _, port, recorder = local
    assert (
        _tools(tmp_path, ["127.0.0.0/30"])["http_get"]
        .invoke({"url": f"http://127.0.0.1:{port}/x"})
        .endswith("secret")
    )
    # A host name in the list opens that name only, not the address behind it.
    assert (
        _tools(tmp_path, ["localhost"])["http_get"]
        .invoke({"url": f"http://localhost:{port}/y"})
        .endswith("secret")
    )
    with pytest.raises(ToolException, match="loopback"):
        _tools(tmp_path, ["localhost"])["http_get"].invoke({"url": f"http://127.0.0.1:{port}/z"})
    assert [r["path"] for r in recorder.requests] == ["/x", "/y"]


@pytest.mark.parametrize(("hops", "followed"), [(5, True), (6, False)])
def test_at_most_five_redirects_are_followed(tmp_path: Path, hops: int, followed: bool) -> None:
    class Chain(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - fixed by http.server
            left = int(self.path.strip("/") or hops)
            if left:
                self.send_response(302)
                self.send_header("Location", f"/{left - 1}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"end")

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Chain)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{hops}"
        get = _tools(tmp_path, ["127.0.0.1"])["http_get"]
        if followed:
            assert get.invoke({"url": url}).endswith("end")
        else:
            with pytest.raises(ToolException, match="more than 5 redirects"):
                get.invoke({"url": url})
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_redirect_to_an_internal_address_is_refused(tmp_path: Path) -> None:
    # The "secret" service listens on 127.0.0.2, which the allow-list does not open.
    secret_log, front_log = Recorder(), Recorder()
    secret = _server("127.0.0.2", secret_log)
    front = _server("127.0.0.1", front_log, f"http://127.0.0.2:{secret.server_address[1]}/")
    for httpd in (secret, front):
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{front.server_address[1]}/redirect"
        with pytest.raises(ToolException) as info:
            _tools(tmp_path, ["127.0.0.1"])["http_get"].invoke({"url": url})
        assert "127.0.0.2" in str(info.value) and "loopback" in str(info.value)
        assert len(front_log.requests) == 1
        assert secret_log.requests == []
        # Opened on purpose, the same redirect is followed.
        text = _tools(tmp_path, ["127.0.0.1", "127.0.0.2"])["http_get"].invoke({"url": url})
        assert text.endswith("secret") and len(secret_log.requests) == 1
    finally:
        for httpd in (secret, front):
            httpd.shutdown()
            httpd.server_close()


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX-Slow: ",
        # The body drips. A response without a length (HTTP/1.0, `Connection: close`, none
        # given) makes http.client drop the connection's socket once the headers are read, and
        # a watchdog that shut down `conn.sock` found none: the call ran for the whole drip.
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
    ],
    ids=["headers", "body-with-length", "body-http-1.0", "body-connection-close"],
)
def test_one_deadline_covers_a_server_dripping_its_response(tmp_path: Path, head: bytes) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(head)
            for byte in b"a" * 200:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.1)

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    started = time.monotonic()
    try:
        with pytest.raises(ToolException, match="timed out"):
            _tools(tmp_path, ["127.0.0.1"], timeout=1.0)["http_get"].invoke({"url": url})
        # Each byte arrives well inside any per-read timeout; only an overall deadline stops it.
        assert time.monotonic() - started < 4.0
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


def test_idempotency_key_and_json_body_are_sent(tmp_path: Path, local) -> None:
    _, port, recorder = local
    tools = _tools(tmp_path, ["127.0.0.1"])
    call = ToolCallIdentity(StepIdentity("run-1", "s1", 1), 0)
    with calling_tool(call):
        tools["http_get"].invoke({"url": f"http://127.0.0.1:{port}/g"})
        text = tools["http_request"].invoke(
            {"method": "PUT", "url": f"http://127.0.0.1:{port}/p", "body": {"amount": 3}}
        )
    assert text.startswith(f"HTTP 200 http://127.0.0.1:{port}/p")
    tools["http_get"].invoke({"url": f"http://127.0.0.1:{port}/outside-a-step"})
    get, put, outside = recorder.requests
    assert get["headers"]["Idempotency-Key"] == call.idempotency_key
    assert put["method"] == "PUT" and json.loads(put["body"]) == {"amount": 3}
    assert put["headers"]["Idempotency-Key"] == call.idempotency_key
    assert put["headers"]["Content-Type"] == "application/json"
    assert "Idempotency-Key" not in outside["headers"]


def test_http_request_does_not_follow_redirects(tmp_path: Path, local) -> None:
    _, port, recorder = local
    text = _tools(tmp_path, ["127.0.0.1"])["http_request"].invoke(
        {"method": "POST", "url": f"http://127.0.0.1:{port}/redirect", "body": [1]}
    )
    assert text.startswith(f"HTTP 302 http://127.0.0.1:{port}/redirect")
    assert len(recorder.requests) == 1


def test_allow_list_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANEXEC_NET_ALLOW", "intranet.example, 10.0.0.0/8 ,[fd00::1]")
    allow = ToolSettings(workspace=Path(".")).net_allow
    assert allow.allows("INTRANET.example.", ipaddress.ip_address("10.9.9.9"))
    assert allow.allows("x", ipaddress.ip_address("10.9.9.9"))
    assert allow.allows("x", ipaddress.ip_address("fd00::1"))
    assert not allow.allows("x", ipaddress.ip_address("192.168.0.1"))


# --- Resolution: every answer is checked, and the socket goes to the checked one --------------
# These need a name whose answers the test chooses; a resolver on the real socket.getaddrinfo
# stands in for DNS. Everything else (the guard, the sockets, the servers) is real.


def _fake_dns(
    monkeypatch: pytest.MonkeyPatch, name: str, answers: Callable[[int], list[str]]
) -> list[str]:
    """Make `name` resolve to `answers(n)` on its n-th lookup (0-based); return the lookup log."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):  # noqa: ANN001, ANN202 - socket's signature
        if host != name:
            return real(host, port, *args, **kwargs)
        ips = answers(len(asked))
        asked.append(host)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port)) for ip in ips
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def _bind_all(hosts: tuple[str, ...]) -> list[tuple[ThreadingHTTPServer, Recorder]]:
    """Recording servers on every one of `hosts`, on one port free on all of them."""
    for _ in range(20):
        made: list[tuple[ThreadingHTTPServer, Recorder]] = []
        try:
            for host in hosts:
                port = made[0][0].server_address[1] if made else 0
                recorder = Recorder()
                made.append((_server(host, recorder, port=port), recorder))
            return made
        except OSError:
            for httpd, _ in made:
                httpd.server_close()
    raise RuntimeError(f"no port free on all of {hosts}")


@contextmanager
def _servers(*hosts: str) -> Iterator[list[tuple[ThreadingHTTPServer, Recorder]]]:
    """Recording HTTP servers on the given loopback addresses, all on one port."""
    made = _bind_all(hosts)
    for httpd, _ in made:
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield made
    finally:
        for httpd, _ in made:
            httpd.shutdown()
            httpd.server_close()


def test_a_name_is_refused_when_any_of_its_addresses_is_internal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """127.0.0.1 is opened, 127.0.0.2 is not: a name answering both must be refused, whichever
    answer comes first (an attacker's DNS puts the allowed one first)."""
    with _servers("127.0.0.1", "127.0.0.2") as [(front, front_log), (_, secret_log)]:
        port = front.server_address[1]
        _fake_dns(monkeypatch, "mixed.planexec.test", lambda n: ["127.0.0.1", "127.0.0.2"])
        url = f"http://mixed.planexec.test:{port}/"
        with pytest.raises(ToolException) as info:
            _tools(tmp_path, ["127.0.0.1"])["http_get"].invoke({"url": url})
        assert "resolves to 127.0.0.2" in str(info.value)
        assert front_log.requests == [] and secret_log.requests == []


def test_the_socket_connects_to_the_address_that_was_checked_not_a_new_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name answers the allowed 127.0.0.1 when checked, then 127.0.0.2 (the
    internal service) to any later lookup. The request must reach 127.0.0.1, resolved once."""
    with _servers("127.0.0.1", "127.0.0.2") as [(front, front_log), (_, secret_log)]:
        port = front.server_address[1]
        asked = _fake_dns(
            monkeypatch,
            "rebind.planexec.test",
            lambda n: ["127.0.0.1"] if n == 0 else ["127.0.0.2"],
        )
        url = f"http://rebind.planexec.test:{port}/r"
        _tools(tmp_path, ["127.0.0.1"])["http_get"].invoke({"url": url})
        assert secret_log.requests == []
        assert [r["path"] for r in front_log.requests] == ["/r"]
        # The Host header still carries the name (virtual hosts, TLS), not the IP.
        assert front_log.requests[0]["headers"]["Host"] == f"rebind.planexec.test:{port}"
        assert asked == ["rebind.planexec.test"]


def test_a_host_entry_in_the_allow_list_opens_that_exact_name_only(tmp_path: Path, local) -> None:
    _, port, recorder = local
    for entries in (["calhost"], ["host"], ["localhost.example"], ["local"]):
        with pytest.raises(ToolException, match="refused"):
            _tools(tmp_path, entries)["http_get"].invoke({"url": f"http://localhost:{port}/"})
    loopback = ipaddress.ip_address("127.0.0.1")
    allow = AllowList.parse(["localhost"])
    assert allow.allows("LocalHost.", loopback)
    for other in ("notlocalhost", "evil-localhost", "localhost.evil.example", "sub.localhost"):
        assert not allow.allows(other, loopback), other
    assert recorder.requests == []


# --- Size bound: the body is read only up to the cap --------------------------------------------


@contextmanager
def _raw_server(respond: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    """A one-connection TCP server on 127.0.0.1 running `respond(conn, stop)`; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            try:
                respond(conn, stop)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


def _capped_get(tmp_path: Path, max_bytes: int, timeout: float):
    settings = ToolSettings(
        workspace=tmp_path,
        http_timeout_s=timeout,
        http_max_bytes=max_bytes,
        net_allow=AllowList.parse(["127.0.0.1"]),
    )
    return make_http_tools(settings)[0]


def test_a_huge_body_is_cut_at_the_cap_without_waiting_for_the_rest(tmp_path: Path) -> None:
    """The server announces 100 MB, sends 64 KiB and then holds the connection open. Reading
    only up to the cap answers at once; reading the whole body would wait for bytes that never
    come, until the deadline, and fail."""

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000000\r\n\r\n"
        conn.sendall(head + b"x" * 65536)
        stop.wait(30)

    with _raw_server(respond) as port:
        url = f"http://127.0.0.1:{port}/big"
        text = _capped_get(tmp_path, 50, timeout=5.0).invoke({"url": url})
    header, body, note = text.split("\n\n")
    assert header == f"HTTP 200 {url} (text/plain)"
    assert body == "x" * 50
    assert note == "[truncated: showing the first 50 bytes of a longer response]"


def test_a_body_that_pauses_exactly_at_the_cap_is_still_reported_cut(tmp_path: Path) -> None:
    """50 bytes, a pause, then more: the reader must look one byte past the cap, not stop at
    the cap and call a longer body complete. (If the client is slow enough to see everything at
    once the test still passes on correct code; it cannot fail spuriously.)"""

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"a" * 50)
        stop.wait(0.5)
        conn.sendall(b"b" * 50)

    with _raw_server(respond) as port:
        text = _capped_get(tmp_path, 50, timeout=10.0).invoke({"url": f"http://127.0.0.1:{port}/"})
    assert text.split("\n\n")[1] == "a" * 50
    assert text.endswith("[truncated: showing the first 50 bytes of a longer response]")


# --- TLS: the certificate is verified, against the name, while connecting to the pinned IP ------


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for the name 'localhost' only (no IP entry):
    (ca.pem, server.pem, server.key)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key, issuer: str, signer, *, ca: bool, names: list[str]):  # noqa: ANN001, ANN202
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("planexec test CA", ca_key, "planexec test CA", ca_key, ca=True, names=[])
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = cert("localhost", key, "planexec test CA", ca_key, ca=False, names=["localhost"])
    pem = serialization.Encoding.PEM
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(leaf.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, Recorder]]:
    """An HTTPS server on 127.0.0.1 presenting a certificate for 'localhost'; yields its port,
    the CA that signed it, and the requests it got."""
    ca, chain, key = _tls_files(tmp_path)
    recorder = Recorder()
    httpd = _server("127.0.0.1", recorder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.handle_error = lambda *args: None  # refused handshakes are expected here
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield httpd.server_address[1], ca, recorder
    httpd.shutdown()
    httpd.server_close()


def test_https_checks_the_certificate_against_the_name_while_connecting_to_the_pinned_ip(
    tmp_path: Path, tls_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca, recorder = tls_server
    tools = _tools(tmp_path, ["127.0.0.1"])
    # Not trusted: the system's CAs did not sign it.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(ToolException, match="the TLS certificate was refused"):
        tools["http_get"].invoke({"url": f"https://localhost:{port}/untrusted"})
    # Trusted (OpenSSL reads SSL_CERT_FILE for the default CAs): the socket goes to the checked
    # 127.0.0.1 while SNI and the certificate check use the name in the URL.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    text = tools["http_get"].invoke({"url": f"https://localhost:{port}/ok"})
    assert text.startswith(f"HTTP 200 https://localhost:{port}/ok") and text.endswith("secret")
    # A trusted certificate for another name is refused: it is 'localhost's, not 127.0.0.1's.
    with pytest.raises(ToolException, match="the TLS certificate was refused"):
        tools["http_get"].invoke({"url": f"https://127.0.0.1:{port}/wrong-name"})
    assert [r["path"] for r in recorder.requests] == ["/ok"]


def test_an_ipv4_address_carried_inside_an_ipv6_one_is_checked_too() -> None:
    """NAT64 and Teredo addresses carry an IPv4 address; it is checked beside the IPv6 one
    (Python's own flags happen to cover the well-known prefixes, so this checks the unpacking
    itself: turning it off passed every test)."""
    from tools.netguard import _with_embedded

    nat64 = ipaddress.ip_address("64:ff9b::7f00:1")
    assert ipaddress.ip_address("127.0.0.1") in _with_embedded(nat64)
    teredo = ipaddress.ip_address("2001:0:4136:e378:8000:63bf:f5ff:fffe")  # client 10.0.0.1
    assert ipaddress.ip_address("10.0.0.1") in _with_embedded(teredo)
    assert ipaddress.ip_address("127.0.0.1") in _with_embedded(
        ipaddress.ip_address("::ffff:127.0.0.1")
    )


def test_an_allowed_host_matches_with_or_without_its_trailing_dot() -> None:
    from tools.netguard import AllowList

    internal = ipaddress.ip_address("10.0.0.1")
    assert AllowList.parse(["internal.example."]).allows("internal.example", internal)
    assert AllowList.parse(["internal.example"]).allows("internal.example.", internal)
    assert not AllowList.parse(["internal.example"]).allows("other.example", internal)
