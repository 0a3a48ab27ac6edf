"""The web playground: static files shipped in the package, served at ``/`` and ``/playground/*``.

The files themselves need no key: the page asks its user for one and calls the public API with it, so it is
behind the same authentication as any other client. Its Content-Security-Policy lets it load only this
server's own scripts, styles and API, so that text a model wrote, even if it got past the sanitiser, cannot run
script or send the key anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from ..errors import ApiError

ASSETS = Path(__file__).resolve().parent.parent / "playground"

_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "img-src 'self' data: blob:",  # a model's images arrive as base64
    "media-src 'self' data: blob:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])  # fmt: skip
_HEADERS = {
    "content-security-policy": _POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # revalidated each time (ETag): an upgraded package's page never runs with a cached older script
    "cache-control": "no-cache",
}


class _Assets(StaticFiles):
    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(_HEADERS)
        return response


async def index(request: Request) -> Response:
    page = ASSETS / "index.html"
    if not page.is_file():  # an install without the package's data files: the API still serves
        raise ApiError(404, "The playground's files are not installed with this package.")
    return FileResponse(page, headers=_HEADERS)


PLAYGROUND_ROUTES = [
    Route("/", index, methods=["GET"]),
    Mount("/playground", _Assets(directory=ASSETS, check_dir=False), name="playground"),
]
