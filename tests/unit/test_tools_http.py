import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from langchain_core.tools import ToolException

from tools.http import make_http_tools
from tools.netguard import AllowList
from tools.settings import ToolSettings

LOCAL = AllowList.parse(["127.0.0.1"])

BIG_BODY = b"0123456789" * 10  # 100 bytes


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - name fixed by http.server
        if self.path == "/drip":  # a byte every 0.3 s: no single read times out
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.3)
            return
        routes = {
            "/hello": (200, "text/plain; charset=utf-8", "héllo wörld".encode()),
            "/big": (200, "text/plain", BIG_BODY),
            "/exact": (200, "text/plain", BIG_BODY[:50]),
            "/latin1": (200, "text/plain; charset=latin-1", "café".encode("latin-1")),
            "/image": (200, "image/png", b"\x89PNG\r\n"),
            "/to-ftp": (302, "text/plain", b""),
        }
        status, content_type, body = routes.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.path == "/to-ftp":
            self.send_header("Location", "ftp://127.0.0.1/secret")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def http_get(tmp_path: Path):
    settings = ToolSettings(
        workspace=tmp_path, http_timeout_s=2.0, http_max_bytes=50, net_allow=LOCAL
    )
    return make_http_tools(settings)[0]


def test_fetches_text(http_get, server: str) -> None:
    text = http_get.invoke({"url": f"{server}/hello"})
    assert text == f"HTTP 200 {server}/hello (text/plain; charset=utf-8)\n\nhéllo wörld"


def test_uses_declared_charset(http_get, server: str) -> None:
    assert http_get.invoke({"url": f"{server}/latin1"}).endswith("\n\ncafé")


def test_truncates_at_size_cap(http_get, server: str) -> None:
    text = http_get.invoke({"url": f"{server}/big"})
    header, body, note = text.split("\n\n")
    assert header == f"HTTP 200 {server}/big (text/plain)"
    assert body == BIG_BODY[:50].decode()
    assert note == "[truncated: showing the first 50 bytes of a longer response]"


def test_body_exactly_at_cap_is_not_truncated(http_get, server: str) -> None:
    text = http_get.invoke({"url": f"{server}/exact"})
    assert text.endswith("\n\n" + BIG_BODY[:50].decode())
    assert "truncated" not in text


def test_http_error_status(http_get, server: str) -> None:
    with pytest.raises(ToolException) as info:
        http_get.invoke({"url": f"{server}/missing"})
    assert str(info.value).startswith(f"http_get got HTTP 404 Not Found from {server}/missing.")


def test_binary_content_refused(http_get, server: str) -> None:
    with pytest.raises(ToolException, match=r"it is binary \(image/png\)"):
        http_get.invoke({"url": f"{server}/image"})


def test_redirect_to_other_scheme_refused(http_get, server: str) -> None:
    # urllib itself would follow a redirect to ftp://; the tool must not.
    with pytest.raises(ToolException, match="a redirect to 'ftp://127.0.0.1/secret' was refused"):
        http_get.invoke({"url": f"{server}/to-ftp"})


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("file:///etc/passwd", "file"),
        ("ftp://example.com/x", "ftp"),
        ("gopher://example.com", "gopher"),
        ("javascript:alert(1)", "javascript"),
        ("example.com/page", "none"),
    ],
)
def test_refuses_other_schemes(http_get, url: str, scheme: str) -> None:
    with pytest.raises(ToolException) as info:
        http_get.invoke({"url": url})
    assert str(info.value) == (
        f"http_get refused '{url}': only http:// and https:// URLs are allowed "
        f"(got scheme '{scheme}')."
    )


def test_refuses_url_without_host(http_get) -> None:
    with pytest.raises(ToolException, match="has no host name"):
        http_get.invoke({"url": "http:///path"})


def test_connection_refused(http_get) -> None:
    # Bind then close a port so nothing is listening there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with pytest.raises(ToolException) as info:
        http_get.invoke({"url": url})
    message = str(info.value)
    assert message.startswith(f"http_get could not reach {url}: ")
    assert "refused" in message.lower()
    assert message.endswith(
        "The network may be unavailable; try another source or finish without it."
    )


def test_timeout_is_reported(tmp_path: Path) -> None:
    # A listening socket that never answers: the read times out.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        settings = ToolSettings(workspace=tmp_path, http_timeout_s=0.2, net_allow=LOCAL)
        tool = make_http_tools(settings)[0]
        with pytest.raises(ToolException) as info:
            tool.invoke({"url": url})
    assert str(info.value).startswith(f"http_get could not reach {url}: timed out")


def test_a_server_dripping_bytes_cannot_outlast_the_timeout(http_get, server: str) -> None:
    # The drip would take 12 s, yet no single read waits longer than the 2 s socket timeout.
    with pytest.raises(ToolException, match="timed out"):
        http_get.invoke({"url": f"{server}/drip"})
