import gzip
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from langchain_core.tools import ToolException

from tools.http import MAX_ERROR_BODY_CHARS, MAX_REQUEST_BODY_BYTES, make_http_tools
from tools.netguard import AllowList
from tools.settings import ToolSettings

LOCAL = AllowList.parse(["127.0.0.1"])

PUNY_BODY = b"a-" + b"7" * 300_000
BIG_BODY = b"0123456789" * 10  # 100 bytes
# What POSTs reached the server: path and body length.
RECEIVED: list[tuple[str, int]] = []


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
            # Codecs a page may name that are no web text encoding (see tools/http.py).
            "/punycode": (200, "text/plain; charset=punycode", PUNY_BODY),
            "/idna": (200, "text/plain; charset=idna", b"caf\xc3\xa9 " + b"x" * 100),
            "/utf7": (200, "text/plain; charset=utf-7", b"+2AA-"),
            "/shift-jis": (200, "text/plain; charset=Shift_JIS", "日本".encode("shift_jis")),
            "/image": (200, "image/png", b"\x89PNG\r\n"),
            "/to-ftp": (302, "text/plain", b""),
            "/compressible": (200, "text/plain", b"plain words"),
            "/get-bad-request": (400, "text/plain", b"missing parameter"),
        }
        status, content_type, body = routes.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if self.path == "/to-ftp":
            self.send_header("Location", "ftp://127.0.0.1/secret")
        if self.path == "/compressible" and "identity" not in self.headers.get(
            "Accept-Encoding", ""
        ):  # a client that does not say identity may get any encoding (RFC 9110)
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - name fixed by http.server
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        RECEIVED.append((self.path, length))
        # Redirects, which http_request reports and does not follow.
        redirects = {"/moved": (302, "/hello"), "/temporary": (307, "/ok")}
        if self.path in redirects:
            status, location = redirects[self.path]
            self.send_response(status)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        routes = {
            "/ok": (200, "application/json", b'{"ok": true}'),
            "/bad-request": (400, "text/plain", b"missing field 'name'"),
            "/unprocessable": (422, "text/plain", b"E" * 400 + b"F" * 2000),
            "/image": (200, "Image/PNG", b"\x89PNG\r\n"),
        }
        status, content_type, body = routes.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST  # noqa: N815 - name fixed by http.server

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
    assert http_get.invoke({"url": f"{server}/shift-jis"}).endswith("\n\n日本")


def test_a_charset_that_is_no_web_text_encoding_is_read_as_utf_8(
    tmp_path: Path, server: str
) -> None:
    """punycode's decoder is quadratic: this 300 KB body took 127 s, past the 10 s deadline
    (which covers the network only), and a 1 MB one would take about 20 minutes. idna raised
    instead of decoding, and utf-7 wrote lone surrogates."""
    settings = ToolSettings(workspace=tmp_path, http_max_bytes=1_000_000, net_allow=LOCAL)
    http_get = make_http_tools(settings)[0]
    started = time.monotonic()
    text = http_get.invoke({"url": f"{server}/punycode"})
    assert time.monotonic() - started < 5
    assert text.endswith("\n\n" + PUNY_BODY.decode())
    assert http_get.invoke({"url": f"{server}/idna"}).endswith("\n\ncafé " + "x" * 100)
    assert http_get.invoke({"url": f"{server}/utf7"}).endswith("\n\n+2AA-")


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


@pytest.fixture
def http_request(tmp_path: Path):
    settings = ToolSettings(workspace=tmp_path, http_timeout_s=5.0, net_allow=LOCAL)
    return make_http_tools(settings)[1]


def test_http_request_body_over_the_cap_is_refused_before_sending(http_request, server) -> None:
    """A model can write any body; one over the cap never leaves the machine."""
    RECEIVED.clear()
    # A JSON string of n characters encodes as n + 2 bytes (its quotes).
    at_cap = "x" * (MAX_REQUEST_BODY_BYTES - 2)
    assert http_request.invoke({"method": "POST", "url": f"{server}/ok", "body": at_cap})
    with pytest.raises(ToolException) as info:
        http_request.invoke({"method": "POST", "url": f"{server}/ok", "body": at_cap + "x"})
    assert str(info.value) == (
        f"http_request refused: the JSON body is {MAX_REQUEST_BODY_BYTES + 1} bytes, over the "
        f"{MAX_REQUEST_BODY_BYTES}-byte limit."
    )
    assert RECEIVED == [("/ok", MAX_REQUEST_BODY_BYTES)]


def test_http_request_400_is_an_error_with_the_apis_message(http_request, server) -> None:
    """400 is the first error status: the model must not read it as success."""
    with pytest.raises(ToolException) as info:
        http_request.invoke({"method": "POST", "url": f"{server}/bad-request", "body": {}})
    assert str(info.value) == (
        f"http_request POST {server}/bad-request got HTTP 400 Bad Request: missing field 'name'"
    )


def test_http_request_error_body_is_cut_to_a_snippet(http_request, server) -> None:
    """An error page can be megabytes (up to the byte cap); the model gets only its start."""
    with pytest.raises(ToolException) as info:
        http_request.invoke({"method": "PUT", "url": f"{server}/unprocessable", "body": [1]})
    message = str(info.value)
    assert message.startswith(f"http_request PUT {server}/unprocessable got HTTP 422 ")
    snippet = message.partition(": ")[2]
    assert snippet == "E" * 400 + "F" * (MAX_ERROR_BODY_CHARS - 400)


def test_binary_content_type_is_refused_in_any_case(http_request, server) -> None:
    """Media types are case-insensitive: 'Image/PNG' is still an image."""
    with pytest.raises(ToolException, match=r"it is binary \(Image/PNG\)"):
        http_request.invoke({"method": "POST", "url": f"{server}/image", "body": None})


def test_asks_for_the_body_uncompressed(http_get, server: str) -> None:
    """The size cap and the text check read the bytes as sent: a compressed body would be
    gibberish to both (and a small one can unpack to gigabytes), so none is accepted."""
    assert http_get.invoke({"url": f"{server}/compressible"}).endswith("\n\nplain words")


def test_http_request_reports_a_redirect_and_does_not_follow_it(http_request, server: str) -> None:
    """A write is sent once, to the address the step named: a redirect is the answer (the
    model may ask again there), never a second request, with or without the body."""
    for path, status in (("/moved", 302), ("/temporary", 307)):
        RECEIVED.clear()
        answer = http_request.invoke({"method": "POST", "url": f"{server}{path}", "body": {}})
        assert answer.startswith(f"HTTP {status} {server}{path}")
        assert [p for p, _ in RECEIVED] == [path]


def test_http_get_reads_400_as_an_error_too(http_get, server: str) -> None:
    """400 is the first error status for http_get as for http_request (a mutation to `> 400`
    passed every test)."""
    with pytest.raises(ToolException) as info:
        http_get.invoke({"url": f"{server}/get-bad-request"})
    assert str(info.value).startswith(f"http_get got HTTP 400 Bad Request from {server}/")
