"""A tiny web site on loopback for url_context tests, and a JSON API for fake upstreams (SearxNG)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = """<html><head><title>The secret page</title></head><body><nav>Home</nav>
<article><h1>About the secret</h1><p>The secret number of this page is 7341, and it is written only here.</p>
<p>Everything else on this page is filler text about nothing in particular.</p></article></body></html>"""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/page": (200, "text/html; charset=utf-8", PAGE, {}),
            "/plain": (200, "text/plain", "plain words here", {}),
            "/redirect-private": (302, "text/plain", "", {"Location": "http://10.0.0.1/internal"}),
            "/redirect-metadata": (301, "text/plain", "", {"Location": "http://169.254.169.254/latest/meta-data/"}),
            "/redirect-page": (302, "text/plain", "", {"Location": "/page"}),
            "/forbidden": (403, "text/html", "<p>members only</p>", {}),
            "/binary": (200, "application/octet-stream", "\x00\x01", {}),
        }
        status, kind, body, headers = routes.get(self.path, (404, "text/plain", "not here", {}))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def site() -> Iterator[str]:
    with _serving(_Handler) as url:
        yield url


@contextmanager
def json_api(answer: Callable[[str], object]) -> Iterator[str]:
    """Each GET is answered 200 with ``answer(path)`` as JSON."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answer(self.path)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with _serving(Handler) as url:
        yield url


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
