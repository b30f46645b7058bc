"""The network guard against real sockets on 127.0.0.x: internal addresses in every spelling are
refused before any byte is sent, redirects are checked again, the allow-list opens exactly what it
names, one deadline covers a server dripping its headers, and the idempotency key is sent."""

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Iterator
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


def _server(host: str, recorder: Recorder, redirect_to: str = "") -> ThreadingHTTPServer:
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

    return ThreadingHTTPServer((host, 0), Handler)


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


def test_one_deadline_covers_a_server_dripping_its_headers(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
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
