"""http_get: fetch a web page or API response as text (http/https only)."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from tools.settings import ToolSettings

ALLOWED_SCHEMES = ("http", "https")
USER_AGENT = "planexec-http-get/1.0"
_BINARY_TYPES = ("image/", "audio/", "video/", "application/octet-stream", "application/zip")


class _SafeRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http/https (urllib would also follow ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if urlsplit(newurl).scheme.lower() not in ALLOWED_SCHEMES:
            raise ToolException(
                f"http_get refused a redirect from {req.full_url} to '{newurl}': "
                "only http:// and https:// URLs are allowed."
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(settings: ToolSettings, url: str) -> str:
    """GET `url` and return a status line plus the decoded body (truncated at the byte cap)."""
    url = url.strip()
    _check_url(url)
    opener = urllib.request.build_opener(_SafeRedirectHandler())
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with opener.open(request, timeout=settings.http_timeout_s) as response:
            # +1 byte tells "exactly at the cap" apart from "cut off".
            body = _read_until(response, settings.http_max_bytes + 1, settings.http_timeout_s)
            status, final_url = response.status, response.geturl()
            content_type = response.headers.get("Content-Type", "")
            charset = response.headers.get_content_charset() or "utf-8"
    except urllib.error.HTTPError as exc:  # before URLError: HTTPError subclasses it
        raise ToolException(
            f"http_get got HTTP {exc.code} {exc.reason} from {url}. "
            "Check the URL, or try another source."
        ) from None
    except urllib.error.URLError as exc:
        raise _unreachable(url, exc.reason) from None
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        # Timeouts and resets during read() are not wrapped in URLError.
        raise _unreachable(url, exc) from None

    if content_type.lower().startswith(_BINARY_TYPES):
        raise ToolException(
            f"http_get fetched {url} but it is binary ({content_type}); only text can be read."
        )
    truncated = len(body) > settings.http_max_bytes
    text = _decode(body[: settings.http_max_bytes], charset)
    header = f"HTTP {status} {final_url}" + (f" ({content_type})" if content_type else "")
    parts = [header, "", text]
    if truncated:
        parts += [
            "",
            f"[truncated: showing the first {settings.http_max_bytes} bytes of a longer response]",
        ]
    return "\n".join(parts)


def _read_until(response: Any, limit: int, seconds: float) -> bytes:
    """Up to `limit` bytes, within `seconds` in all: the socket timeout alone is per read, so a
    server dripping a byte at a time could otherwise hold a step for ever."""
    deadline = time.monotonic() + seconds
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the response took longer than {seconds:g} s in all")
        chunk = response.read1(min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise ToolException(
            f"http_get refused '{url}': only http:// and https:// URLs are allowed "
            f"(got scheme '{parts.scheme or 'none'}')."
        )
    if not parts.hostname:
        raise ToolException(f"http_get refused '{url}': the URL has no host name.")


def _decode(body: bytes, charset: str) -> str:
    # The declared charset wins; unknown charsets fall back to UTF-8.
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _unreachable(url: str, reason: object) -> ToolException:
    if isinstance(reason, TimeoutError):
        reason = "timed out"
    return ToolException(
        f"http_get could not reach {url}: {reason}. "
        "The network may be unavailable; try another source or finish without it."
    )


class HttpGetArgs(BaseModel):
    url: str = Field(
        description="Full http:// or https:// URL, e.g. 'https://example.com/data.json'."
    )


def make_http_tools(settings: ToolSettings) -> list[BaseTool]:
    """Build http_get bound to the timeout and size cap in `settings`."""

    def http_get(url: str) -> str:
        return fetch(settings, url)

    return [
        StructuredTool.from_function(
            func=http_get,
            name="http_get",
            description=(
                "Fetch a URL with HTTP GET and return 'HTTP <status> <url> (<content type>)', a "
                "blank line, then the body as text (raw HTML/JSON, not rendered). Only http:// "
                f"and https:// URLs; bodies over {settings.http_max_bytes} bytes are truncated. "
                "Fails with a clear message if the network is unavailable."
            ),
            args_schema=HttpGetArgs,
        )
    ]
