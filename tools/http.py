"""http_get and http_request: HTTP through the network guard (tools/netguard.py).

http_get follows redirects (each hop checked again); http_request (POST/PUT/PATCH/DELETE with a
JSON body) does not: a side effect sent somewhere the caller did not name is not what was asked.
Both send the tool call's `Idempotency-Key` when a planexec step is running, so a call repeated
after a crash is recognised by callees that honour the header.
"""

from __future__ import annotations

import codecs
import json
from typing import Any, Literal

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from tools import netguard, step_context
from tools.settings import ToolSettings

USER_AGENT = "planexec-http/1.0"
MAX_REQUEST_BODY_BYTES = 100_000
# An error body is shown to the model only this far: enough for an API's error message.
MAX_ERROR_BODY_CHARS = 500
_BINARY_TYPES = ("image/", "audio/", "video/", "application/octet-stream", "application/zip")


def fetch(settings: ToolSettings, url: str) -> str:
    """GET `url` and return a status line plus the decoded body (truncated at the byte cap)."""
    response = _send(settings, "http_get", "GET", url.strip(), None, follow_redirects=True)
    if response.status >= 400:
        raise ToolException(
            f"http_get got HTTP {response.status} {response.reason} from {response.url}. "
            "Check the URL, or try another source."
        )
    return _format(settings, response)


def send_request(settings: ToolSettings, method: str, url: str, body: Any | None) -> str:
    """Send `method` with `body` as JSON; return the status line and the response body."""
    data = None
    if body is not None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        if len(data) > MAX_REQUEST_BODY_BYTES:
            raise ToolException(
                f"http_request refused: the JSON body is {len(data)} bytes, over the "
                f"{MAX_REQUEST_BODY_BYTES}-byte limit."
            )
    response = _send(settings, "http_request", method, url.strip(), data, follow_redirects=False)
    if response.status >= 400:
        snippet = _decode(response.body, response.headers.get_content_charset() or "utf-8")
        raise ToolException(
            f"http_request {method} {response.url} got HTTP {response.status} {response.reason}: "
            f"{snippet[:MAX_ERROR_BODY_CHARS]}"
        )
    return _format(settings, response)


def _send(
    settings: ToolSettings,
    tool: str,
    method: str,
    url: str,
    data: bytes | None,
    *,
    follow_redirects: bool,
) -> netguard.Response:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", "Connection": "close"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    key = step_context.idempotency_key()
    if key is not None:
        headers["Idempotency-Key"] = key
    try:
        return netguard.exchange(
            method,
            url,
            headers=headers,
            body=data,
            max_bytes=settings.http_max_bytes,
            timeout_s=settings.http_timeout_s,
            allow=settings.net_allow,
            follow_redirects=follow_redirects,
        )
    except netguard.NetRefused as exc:
        raise ToolException(f"{tool} refused '{url}': {exc}.") from None
    except netguard.NetFailed as exc:
        raise ToolException(
            f"{tool} could not reach {url}: {exc}. "
            "The network may be unavailable; try another source or finish without it."
        ) from None


def _format(settings: ToolSettings, response: netguard.Response) -> str:
    content_type = response.headers.get("Content-Type", "")
    if content_type.lower().startswith(_BINARY_TYPES):
        raise ToolException(
            f"http fetched {response.url} but it is binary ({content_type}); only text can be read."
        )
    text = _decode(response.body, response.headers.get_content_charset() or "utf-8")
    header = f"HTTP {response.status} {response.url}" + (
        f" ({content_type})" if content_type else ""
    )
    parts = [header, "", text]
    if response.truncated:
        parts += [
            "",
            f"[truncated: showing the first {settings.http_max_bytes} bytes of a longer response]",
        ]
    return "\n".join(parts)


# The page names its charset, and Python has codecs that are no text encoding of the web:
# punycode decodes in quadratic time (a 300 KB body took 127 s, past the deadline, which covers
# the network only), idna raises, unicode_escape and utf-7 write lone surrogates. So a page is
# decoded with an encoding browsers use (the WHATWG Encoding Standard's, and ASCII/UTF-32),
# and any other declared charset reads as UTF-8.
_WEB_CHARSETS = frozenset(
    codecs.lookup(name).name
    for name in (
        "utf-8 utf-8-sig utf-16 utf-16-le utf-16-be utf-32 utf-32-le utf-32-be ascii latin-1 "
        "iso8859-2 iso8859-3 iso8859-4 iso8859-5 iso8859-6 iso8859-7 iso8859-8 iso8859-10 "
        "iso8859-13 iso8859-14 iso8859-15 iso8859-16 koi8-r koi8-u mac-roman mac-cyrillic "
        "cp866 cp874 cp1250 cp1251 cp1252 cp1253 cp1254 cp1255 cp1256 cp1257 cp1258 gbk "
        "gb2312 gb18030 big5 big5hkscs euc-jp iso2022-jp shift-jis cp932 euc-kr cp949"
    ).split()
)


def _decode(body: bytes, charset: str) -> str:
    """The body as text in its declared charset when that is a web text encoding, else UTF-8."""
    try:
        known = codecs.lookup(charset).name in _WEB_CHARSETS
    except (LookupError, ValueError):  # unknown, or not even a name (a NUL, a surrogate)
        known = False
    return body.decode(charset if known else "utf-8", errors="replace")


class HttpGetArgs(BaseModel):
    url: str = Field(
        description="Full http:// or https:// URL, e.g. 'https://example.com/data.json'."
    )


class HttpRequestArgs(BaseModel):
    method: Literal["POST", "PUT", "PATCH", "DELETE"] = Field(description="The HTTP method.")
    url: str = Field(description="Full http:// or https:// URL of the API endpoint.")
    body: Any = Field(default=None, description="JSON body to send (object, list or value).")


def make_http_tools(settings: ToolSettings) -> list[BaseTool]:
    """Build http_get and http_request bound to the guard, timeout and size cap in `settings`."""

    def http_get(url: str) -> str:
        return fetch(settings, url)

    def http_request(method: str, url: str, body: Any = None) -> str:
        return send_request(settings, method, url, body)

    return [
        StructuredTool.from_function(
            func=http_get,
            name="http_get",
            description=(
                "Fetch a URL with HTTP GET and return 'HTTP <status> <url> (<content type>)', a "
                "blank line, then the body as text (raw HTML/JSON, not rendered). Only http:// "
                f"and https:// URLs on public hosts; bodies over {settings.http_max_bytes} bytes "
                "are truncated. Fails with a clear message if the network is unavailable."
            ),
            args_schema=HttpGetArgs,
        ),
        StructuredTool.from_function(
            func=http_request,
            name="http_request",
            description=(
                "Send an HTTP POST, PUT, PATCH or DELETE with a JSON body to a public http(s) "
                "URL and return 'HTTP <status> <url>', a blank line, then the response body. "
                "Redirects are not followed. Use it only when the step asks for a change on a "
                "remote service; it is not repeated after a crash without its idempotency key."
            ),
            args_schema=HttpRequestArgs,
        ),
    ]
