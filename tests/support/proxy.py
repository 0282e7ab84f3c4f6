"""A forward HTTP proxy on 127.0.0.1, for tests of HTTP_PROXY, HTTPS_PROXY and the `proxy` setting.

It passes each request on to the URL in its request line, or opens a CONNECT
tunnel for HTTPS, streams the answer back as it arrives, and records what it
passed on, so a test can see that a request went through it.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from urllib.parse import urlsplit


class Proxy:
    def __init__(self) -> None:
        self.seen: list[str] = []  # "POST http://127.0.0.1:PORT/v1/chat/completions", in order
        self._server: socketserver.ThreadingTCPServer | None = None

    def __enter__(self) -> Proxy:
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Forward)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"


class _Forward(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        client: socket.socket = self.request
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(65536)
            if not chunk:
                return
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ")
        self.server.proxy.seen.append(f"{method} {target}")  # type: ignore[attr-defined]
        if method == "CONNECT":  # HTTPS: a tunnel to host:port, through which TLS runs end to end
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=30) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                upstream.sendall(body)
                _pipe(client, upstream)
            return
        url = urlsplit(target)
        if url.scheme != "http":
            client.sendall(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        headers = [h for h in header_lines if h.split(":", 1)[0].lower() not in ("connection", "proxy-connection", "keep-alive")]
        length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0)
        while len(body) < length:
            chunk = client.recv(65536)
            if not chunk:
                return
            body += chunk
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        with socket.create_connection((url.hostname, url.port or 80), timeout=30) as upstream:
            lines = [f"{method} {path} {version}", *headers, "Connection: close", "", ""]
            upstream.sendall("\r\n".join(lines).encode("latin-1") + body)
            while chunk := upstream.recv(65536):  # the reply, passed on as it streams
                client.sendall(chunk)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Bytes both ways until either side closes."""

    def one_way(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    back = threading.Thread(target=one_way, args=(b, a), daemon=True)
    back.start()
    one_way(a, b)
    back.join(timeout=30)
