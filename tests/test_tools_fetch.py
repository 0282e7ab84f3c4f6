"""fetch_url against real HTTP(S) servers on 127.0.0.1: HTML to text, the cap, redirects, and
every refused address range (loopback, private, link-local, unspecified, multicast, reserved),
redirects to them included. A public server cannot run in the tests, so where a first hop must
pass as public, 127.0.0.1 alone is taken as public by patching the classifier, and said so.
"""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
from typing import Iterator

import pytest

from chatcli.tools import fetch
from chatcli.tools.base import ToolFailed
from chatcli.tools.fetch import FetchUrl, html_to_text


def run(tool, stop: threading.Event | None = None, **arguments) -> str:
    return tool.run(arguments, stop or threading.Event())


def refused(tool, **arguments) -> str:
    with pytest.raises(ToolFailed) as info:
        run(tool, **arguments)
    return str(info.value)

PAGE = """<!doctype html><html><head><title>The  page</title><style>body { color: red }</style>
<script>alert("hidden")</script></head><body><h1>Hello</h1><p>Some <b>bold</b> text &amp; a
<a href="/next">link</a>.</p><noscript>no script</noscript><ul><li>one</li><li>two</li></ul></body></html>"""


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    methods: list[str] = []
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.methods.append(self.command)
        self.paths.append(self.path)
        status, headers, body = self.routes.get(self.path, (404, {"Content-Type": "text/plain"}, b"not here"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def _web() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def web(_web: str) -> str:
    """A local HTTP server's base URL, with the routes below and no requests recorded yet."""
    _Handler.methods, _Handler.paths = [], []
    _Handler.routes = {
        "/page": (200, {"Content-Type": "text/html; charset=utf-8"}, PAGE.encode()),
        "/plain": (200, {"Content-Type": "text/plain; charset=latin-1"}, "café\n".encode("latin-1")),
        "/big": (200, {"Content-Type": "text/plain"}, b"x" * 5000),
        "/image": (200, {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\n"),
        "/odd-charset": (200, {"Content-Type": "text/plain; charset=no-such-charset"}, "naïve".encode()),
        "/gzip": (200, {"Content-Type": "text/plain", "Content-Encoding": "gzip"}, b"\x1f\x8b\x08\x00"),
        "/caf%C3%A9?q=%C3%A9t%C3%A9": (200, {"Content-Type": "text/plain"}, b"accents arrive encoded"),
        "/hop": (302, {"Location": "/page"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/to-metadata": (301, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
        "/to-loopback": (307, {"Location": "http://[::1]/admin"}, b""),
    }
    return _web


@pytest.mark.server
def test_fetch_turns_html_into_text_with_link_targets(web: str) -> None:
    text = run(FetchUrl(allow_private=True), url=f"{web}/page")
    assert text.splitlines()[0] == f"[{web}/page, text/html]"
    assert "# The page\n\nHello\nSome bold text & a link (/next).\none\ntwo" in text
    assert "alert" not in text and "color" not in text and "no script" not in text
    assert _Handler.methods == ["GET"]


@pytest.mark.server
def test_fetch_reads_other_text_in_its_charset_and_refuses_binary(web: str) -> None:
    assert run(FetchUrl(allow_private=True), url=f"{web}/plain").endswith("\ncafé\n")
    assert refused(FetchUrl(allow_private=True), url=f"{web}/image") == \
        f"{web}/image is image/png, not text; fetch_url reads only text."
    assert refused(FetchUrl(allow_private=True), url=f"{web}/missing") == f"{web}/missing answered 404 Not Found."
    assert run(FetchUrl(allow_private=True), url=f"{web}/odd-charset").endswith("\nnaïve")
    assert "came compressed (gzip)" in refused(FetchUrl(allow_private=True), url=f"{web}/gzip")
    assert run(FetchUrl(allow_private=True), url=f"{web}/café?q=été").endswith("\naccents arrive encoded")
    # no header can be smuggled in: the line break is dropped, the space percent-encoded, one path asked for
    assert refused(FetchUrl(allow_private=True), url=f"{web}/a b\r\nX-Injected: 1").endswith("answered 404 Not Found.")
    assert _Handler.paths[-1] == "/a%20bX-Injected:%201"


@pytest.mark.server
def test_fetch_cuts_at_the_cap_and_says_so(web: str) -> None:
    text = run(FetchUrl(allow_private=True, max_bytes=1000), url=f"{web}/big")
    head, body = text.split("\n", 1)
    assert head == f"[{web}/big, text/plain, cut at 1,000 bytes]" and body == "x" * 1000


@pytest.mark.server
def test_fetch_follows_redirects_by_hand_up_to_five(web: str) -> None:
    assert run(FetchUrl(allow_private=True), url=f"{web}/hop").startswith(f"[{web}/page, text/html]")
    assert refused(FetchUrl(allow_private=True), url=f"{web}/loop") == \
        f"{web}/loop redirected more than 5 times; not followed further."
    assert _Handler.methods.count("GET") == 1 + 1 + 6


@pytest.mark.server
@pytest.mark.parametrize("path, address, kind", [
    ("/to-metadata", "169.254.169.254", "a link-local address"),
    ("/to-loopback", "::1", "a loopback address"),
])
def test_a_redirect_to_a_private_address_is_refused(web: str, monkeypatch: pytest.MonkeyPatch, path: str,
                                                    address: str, kind: str) -> None:
    """The first hop is the local server, which stands for a public one here: no public server can
    run in the tests, so 127.0.0.1 alone is taken as public; the hop it redirects to is checked as usual."""
    real = fetch.refusal
    monkeypatch.setattr(fetch, "refusal", lambda ip: None if ip == ipaddress.ip_address("127.0.0.1") else real(ip))
    said = refused(FetchUrl(), url=f"{web}{path}")
    assert said.startswith("fetch_url refused http") and f"{address} is {kind}" in said
    assert _Handler.methods == ["GET"]  # the redirect was never followed


@pytest.mark.server
@pytest.mark.parametrize("url, kind", [
    ("http://127.0.0.1:{port}/page", "a loopback address"),
    ("http://localhost:{port}/page", "a loopback address"),
    ("http://[::1]:{port}/page", "a loopback address"),
    ("http://[::ffff:127.0.0.1]:{port}/page", "a loopback address"),
    ("http://2130706433:{port}/page", "a loopback address"),  # 127.0.0.1 as one number
    ("http://10.0.0.1/", "a private address"),
    ("http://192.168.1.1/", "a private address"),
    ("http://172.16.5.4/", "a private address"),
    ("http://[fd00::1]/", "a private address"),
    ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
    ("http://[fe80::1]/", "a link-local address"),
    ("http://0.0.0.0:{port}/", "an unspecified address"),
    ("http://224.0.0.1/", "a multicast address"),
    ("http://100.64.0.1/", "a reserved address"),
])
def test_private_addresses_are_refused_by_default(web: str, url: str, kind: str) -> None:
    url = url.format(port=web.rsplit(":", 1)[1])
    said = refused(FetchUrl(), url=url)
    assert said.startswith(f"fetch_url refused {url}: ") and f"is {kind}" in said
    assert said.endswith("(set fetch_allow_private = true to allow it).")
    assert _Handler.methods == []  # nothing reached the server


@pytest.mark.server
def test_the_address_connected_to_is_the_one_checked(web: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a name that resolves to a public address when checked must not be connected
    to by a second lookup. The connection goes to the checked address itself, and the address of
    the socket once connected is checked again."""
    real = fetch.refusal
    looked_up = []
    monkeypatch.setattr(fetch, "refusal", lambda ip: None if ip == ipaddress.ip_address("127.0.0.2") else real(ip))
    port = int(web.rsplit(":", 1)[1])

    def resolve(host, *args, **kwargs):
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    said = refused(FetchUrl(), url=f"http://rebind.example:{port}/page")
    # 127.0.0.2 passed (taken as public here), but the server listens on 127.0.0.1 only
    names = [host for host in looked_up if host != "127.0.0.2"]  # the checked address itself, not a name
    assert names == ["rebind.example"] and "Could not fetch" in said and _Handler.methods == []


def test_urls_that_are_not_http_are_refused() -> None:
    for url in ("file:///etc/passwd", "ftp://example.com/", "gopher://x/", "http://", "http://[::1"):
        said = refused(FetchUrl(allow_private=True), url=url)
        assert "fetch_url fetches only those" in said or "is not a valid URL" in said


def test_html_to_text_keeps_text_and_drops_scripts() -> None:
    assert html_to_text("<p>a<script>b</script>c</p><div>d <a href='https://x.org'>e</a></div>") == \
        "ac\nd e (https://x.org)"


@pytest.fixture
def tls_web() -> Iterator[tuple[str, object]]:
    """The same routes over HTTPS, with a certificate for localhost from a CA of the test's own."""
    import ssl

    import trustme

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _Handler.methods, _Handler.paths = [], []
    _Handler.routes = {"/page": (200, {"Content-Type": "text/html"}, PAGE.encode())}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1], ca
    server.shutdown()
    server.server_close()


@pytest.mark.server
def test_https_checks_the_certificate_against_the_name_in_the_url(tls_web) -> None:
    import ssl

    port, ca = tls_web
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    text = run(FetchUrl(allow_private=True, context=trusting), url=f"https://localhost:{port}/page")
    assert text.startswith(f"[https://localhost:{port}/page, text/html]") and "Hello" in text
    said = refused(FetchUrl(allow_private=True, context=trusting), url=f"https://127.0.0.1:{port}/page")
    assert said.startswith(f"Could not fetch https://127.0.0.1:{port}/page (") and "certificate" in said
    said = refused(FetchUrl(allow_private=True), url=f"https://localhost:{port}/page")  # the system's authorities
    assert "certificate verify failed" in said
