"""fetch_url: the model reads a web page, and cannot reach into the machine's own network.

A model told "fetch http://169.254.169.254/latest/meta-data" would read a cloud machine's
credentials; one told to fetch http://localhost:8080/admin would reach what only this machine
may. So every address a name resolves to must be public, the connection goes to one of those
checked addresses (no second lookup a DNS rebinding could answer differently), the address
actually connected to is checked again, and each redirect is followed by hand and checked the
same way. `fetch_allow_private = true` lifts this for a user who wants their LAN.

GET only, http(s) only, no proxy (a proxy would connect on our behalf, past the checks), a cap
on what is read, HTML turned into text. http.client, not httpx2: only llm/client.py owns that.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import string
import threading
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from chatcli.tools.base import ToolFailed

MAX_REDIRECTS = 5
DEFAULT_MAX_BYTES = 1_000_000
TEXT_TYPES = ("application/json", "application/xml", "application/javascript", "application/x-javascript",
              "application/xhtml+xml", "application/rss+xml", "application/atom+xml", "application/ld+json")
USER_AGENT = "chatcli-fetch_url"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def refusal(address: Address) -> str | None:
    """What kind of address this is when the model may not reach it ("a loopback address"), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal(address.ipv4_mapped)  # ::ffff:127.0.0.1 is 127.0.0.1
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a reserved address"
    return None


class FetchUrl:
    """GETs an http(s) URL and returns its text (HTML turned into text), under a size cap."""

    name = "fetch_url"
    description = "Fetch a public http(s) URL with GET and return its text (HTML is turned into plain text)."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"url": {"type": "string", "description": "An http:// or https:// URL."}},
        "required": ["url"],
        "additionalProperties": False,
    }
    asks = False

    def __init__(self, *, allow_private: bool = False, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 15.0,
                 context: ssl.SSLContext | None = None) -> None:
        self.allow_private, self.max_bytes, self.timeout = allow_private, max_bytes, timeout
        self.context = context

    def run(self, arguments: dict[str, Any], stop: threading.Event) -> str:
        url = arguments.get("url", "")
        for _ in range(MAX_REDIRECTS + 1):
            response, connection = self._get(url)
            try:
                if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                    url = urljoin(url, response.getheader("Location", ""))
                    continue
                if response.status >= 400:
                    raise ToolFailed(f"{url} answered {response.status} {response.reason}.")
                return self._text(url, response, stop)
            finally:
                connection.close()
        raise ToolFailed(f"{arguments.get('url')} redirected more than {MAX_REDIRECTS} times; not followed further.")

    def _get(self, url: str) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        """One GET, to an address checked before and after connecting."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ToolFailed(f"{url} is not a valid URL.") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ToolFailed(f"{url} is not an http:// or https:// URL; fetch_url fetches only those.")
        host = parts.hostname
        port = port or (443 if parts.scheme == "https" else 80)
        address = self._address(url, host, port)
        kind = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
        connection = kind(host, port, address=address, check=self._check, url=url, timeout=self.timeout,
                          context=self.context)
        target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=string.punctuation)
        try:
            connection.request("GET", target, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
            return connection.getresponse(), connection
        except ToolFailed:
            connection.close()
            raise
        except (OSError, http.client.HTTPException, UnicodeError) as exc:
            connection.close()
            raise ToolFailed(f"Could not fetch {url} ({_why(exc)}).") from None

    def _address(self, url: str, host: str, port: int) -> str:
        """The address to connect to: every address the name has must be allowed."""
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise ToolFailed(f"Could not fetch {url}: the name {host} did not resolve ({_why(exc)}).") from None
        addresses = list(dict.fromkeys(info[4][0] for info in found))
        for address in addresses:
            self._check(url, address)
        return addresses[0]

    def _check(self, url: str, address: str) -> None:
        if self.allow_private:
            return
        kind = refusal(ipaddress.ip_address(address.split("%")[0]))
        if kind:
            raise ToolFailed(f"fetch_url refused {url}: {address} is {kind}, which the model may not reach "
                             "(set fetch_allow_private = true to allow it).")

    def _text(self, url: str, response: http.client.HTTPResponse, stop: threading.Event) -> str:
        """The body as text, read up to the cap; HTML turned into text; binary refused."""
        kind = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if kind and not (kind.startswith("text/") or kind in TEXT_TYPES or kind.endswith(("+json", "+xml"))):
            raise ToolFailed(f"{url} is {kind}, not text; fetch_url reads only text.")
        encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":  # asked for identity; unpacking would need a cap of its own (a zip bomb)
            raise ToolFailed(f"{url} came compressed ({encoding}) although fetch_url asked for it plain; not read.")
        chunks, size = [], 0
        try:
            while size <= self.max_bytes and not stop.is_set():
                chunk = response.read(min(65536, self.max_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except (OSError, http.client.HTTPException) as exc:
            raise ToolFailed(f"Reading {url} failed ({_why(exc)}).") from None
        data = b"".join(chunks)
        cut = len(data) > self.max_bytes
        data = data[:self.max_bytes]
        if not kind and b"\x00" in data[:4096]:
            raise ToolFailed(f"{url} is binary, not text; fetch_url reads only text.")
        try:
            text = data.decode(response.headers.get_content_charset() or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            text = data.decode("utf-8", errors="replace")
        if kind in ("text/html", "application/xhtml+xml"):
            text = html_to_text(text)
        notes = [f"[{url}, {kind or 'no content type'}"]
        if cut:
            notes.append(f"cut at {self.max_bytes:,} bytes")
        if stop.is_set():
            notes.append("stopped before the end")
        return ", ".join(notes) + "]\n" + text


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to an address already checked, checked again once connected."""

    def __init__(self, host: str, port: int, *, address: str, check: Any, url: str, timeout: float,
                 context: ssl.SSLContext | None = None) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address, self._check, self._url = address, check, url

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        try:
            self._check(self._url, sock.getpeername()[0])
        except ToolFailed:
            sock.close()
            raise
        return sock

    def connect(self) -> None:
        self.sock = self._open()


class _PinnedHTTPS(_PinnedHTTP):
    """The same over TLS, the certificate checked against the name in the URL."""

    def __init__(self, host: str, port: int, *, context: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._context = context or ssl.create_default_context()

    def connect(self) -> None:
        self.sock = self._context.wrap_socket(self._open(), server_hostname=self.host)


BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "section", "article", "header",
          "footer", "blockquote", "table", "ul", "ol", "dl", "dt", "dd", "hr", "title", "main", "nav", "form"}
HIDDEN = {"script", "style", "noscript", "template", "svg", "head"}
_SPACES = re.compile(r"\s+")


class _TextOf(HTMLParser):
    """Text and link targets from HTML: scripts and styles dropped, blocks on lines of their own,
    spaces collapsed as a browser does (but kept in <pre>)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = ""
        self.hidden = 0
        self.pre = 0
        self.links: list[str | None] = []
        self.title = ""
        self.in_title = False

    def _add(self, data: str) -> None:
        if not self.pre:
            data = _SPACES.sub(" ", data)
            if not self.text or self.text.endswith(("\n", " ")):
                data = data.lstrip(" ")
        self.text += data

    def _break(self) -> None:
        self.text = self.text.rstrip(" ")
        if self.text and not self.text.endswith("\n"):
            self.text += "\n"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.in_title = self.in_title or tag == "title"
        self.pre += tag == "pre"
        if tag in HIDDEN:
            self.hidden += 1
        elif tag in BLOCKS:
            self._break()
        if tag == "a":
            self.links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        self.in_title = self.in_title and tag != "title"
        self.pre = max(0, self.pre - (tag == "pre"))
        if tag in HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in BLOCKS:
            self._break()
        if tag == "a" and self.links:
            href = self.links.pop()
            if href and not href.startswith(("#", "javascript:")) and not self.hidden:
                self._add(f" ({href})")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
        if not self.hidden:
            self._add(data)


def html_to_text(html: str) -> str:
    """Readable text from an HTML page: its title, then its text with link targets in brackets."""
    parser = _TextOf()
    parser.feed(html)
    parser.close()
    body = "\n".join(line.rstrip() for line in parser.text.splitlines() if line.strip())
    title = " ".join(parser.title.split())
    return f"# {title}\n\n{body}" if title else body
