"""The fileSearchStores endpoints, with google-genai's paths, parameters and shapes (``client.file_search_stores``,
its ``documents`` and ``upload_to_file_search_store``; ``client.operations.get`` for an upload's operation).

An upload is resumable, as Google's are: the first request (authenticated) carries the document's settings and
answers an upload URL whose ``upload_id`` is the upload's only credential (the SDK sends its bytes there without
the API key); the request that finalises it answers the operation. Every store belongs to the key that created it;
another key's is a 404.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import ApiError, invalid_argument, not_found
from ..filestores.service import STORE_PREFIX, FileStores
from .body import query_flags, read_body
from .routes import _VERSION, _caller

_NO_PARAMS: frozenset[str] = frozenset()
_LIST_PARAMS = frozenset({"pageSize", "pageToken"})
_FORCE = frozenset({"force"})
_MAX_BODY = 64 * 1024


def _stores(request: Request) -> FileStores:
    stores: FileStores | None = request.app.state.service.toolbox.file_stores
    if stores is None:
        raise ApiError(400, "file search is disabled on this server (tools.file_search.enabled = false)",
                       "FAILED_PRECONDITION")  # fmt: skip
    return stores


async def _json(request: Request) -> dict[str, Any]:
    raw = await read_body(request, _MAX_BODY)
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise invalid_argument(f"Invalid JSON payload received. {exc}.") from None
    if not isinstance(data, dict):
        raise invalid_argument("Invalid JSON payload received. The body must be a JSON object.")
    camel: dict[str, Any] = _camel(data)
    return camel


def _camel(value: Any) -> Any:
    """Field names as lowerCamelCase: protobuf's JSON takes a field's proto name too (``custom_metadata``), and
    google-genai sends some nested ones so."""
    if isinstance(value, dict):
        return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def _page_size(params: dict[str, str]) -> int | None:
    value = params.get("pageSize")
    if value is None:
        return None
    if not value.lstrip("-").isdigit():
        raise invalid_argument(f"'pageSize' must be a whole number, got {value!r}")
    return int(value)


def _force(params: dict[str, str]) -> bool:
    value = params.get("force", "false").lower()
    if value not in ("true", "false"):
        raise invalid_argument(f"Query parameter 'force' must be 'true' or 'false', got {value!r}.")
    return value == "true"


async def collection(request: Request) -> Response:
    _, owner = _caller(request)
    stores = _stores(request)
    if request.method == "POST":
        query_flags(request, _NO_PARAMS)
        return JSONResponse(await stores.create_store(owner, await _json(request)))
    params = query_flags(request, _LIST_PARAMS)
    return JSONResponse(await stores.list_stores(owner, _page_size(params), params.get("pageToken")))


async def member(request: Request) -> Response:
    """``fileSearchStores/{id}`` (GET, DELETE) and its custom method ``{id}:importFile`` (POST)."""
    _, owner = _caller(request)
    stores = _stores(request)
    store_id, _, verb = request.path_params["name"].partition(":")
    name = STORE_PREFIX + store_id
    if request.method == "POST":
        query_flags(request, _NO_PARAMS)
        if verb != "importFile":
            raise not_found(f"no such path: POST {request.url.path}")
        body = await _json(request)
        await stores.get_store(owner, name)
        raise not_found(f"no such file: {body.get('fileName')!r} (this server has no Files API: upload the file "
                        "to the store with uploadToFileSearchStore)")  # fmt: skip
    if verb:
        raise not_found(f"no such path: {request.method} {request.url.path}")
    if request.method == "DELETE":
        await stores.delete_store(owner, name, _force(query_flags(request, _FORCE)))
        return JSONResponse({})
    query_flags(request, _NO_PARAMS)
    return JSONResponse(await stores.get_store(owner, name))


async def documents(request: Request) -> Response:
    _, owner = _caller(request)
    params = query_flags(request, _LIST_PARAMS)
    store = STORE_PREFIX + request.path_params["store"]
    listing = await _stores(request).list_documents(owner, store, _page_size(params), params.get("pageToken"))
    return JSONResponse(listing)


async def document(request: Request) -> Response:
    _, owner = _caller(request)
    stores = _stores(request)
    name = f"{STORE_PREFIX}{request.path_params['store']}/documents/{request.path_params['document']}"
    if request.method == "DELETE":
        await stores.delete_document(owner, name, _force(query_flags(request, _FORCE)))
        return JSONResponse({})
    query_flags(request, _NO_PARAMS)
    return JSONResponse(await stores.get_document(owner, name))


async def operation(request: Request) -> Response:
    _, owner = _caller(request)
    query_flags(request, _NO_PARAMS)
    name = request.url.path.split("/", 2)[2]  # fileSearchStores/{store}/[upload/]operations/{id}
    return JSONResponse(await _stores(request).get_operation(owner, name))


async def upload(request: Request) -> Response:
    """``upload/{version}/fileSearchStores/{id}:uploadToFileSearchStore``: a resumable upload's start (with the
    key) or its bytes (with its ``upload_id``)."""
    version = request.path_params["version"]
    store_id, _, verb = request.path_params["name"].partition(":")
    if not _VERSION.fullmatch(version) or verb != "uploadToFileSearchStore":
        raise not_found(f"no such path: {request.url.path}")
    stores = _stores(request)
    token = request.query_params.get("upload_id")
    if token is not None:
        return await _upload_bytes(request, stores, token)
    _, owner = _caller(request)
    query_flags(request, _NO_PARAMS)
    headers = request.headers
    if headers.get("x-goog-upload-protocol", "").lower() != "resumable" or (
        headers.get("x-goog-upload-command", "").lower() != "start"
    ):
        raise invalid_argument("uploads are resumable: send X-Goog-Upload-Protocol: resumable and "
                               "X-Goog-Upload-Command: start first")  # fmt: skip
    size = headers.get("x-goog-upload-header-content-length", "")
    if not size.isdigit():
        raise invalid_argument("X-Goog-Upload-Header-Content-Length must give the file's size in bytes")
    mime_type = headers.get("x-goog-upload-header-content-type", "")
    file_name = headers.get("x-goog-upload-file-name", "")
    body = await _json(request)
    token = await stores.start_upload(owner, STORE_PREFIX + store_id, body, int(size), mime_type, file_name)
    url = str(request.url.replace(query=f"upload_id={token}"))
    return Response(b"", headers={"x-goog-upload-url": url, "x-goog-upload-status": "active"})


async def _upload_bytes(request: Request, stores: FileStores, token: str) -> Response:
    command = {part.strip() for part in request.headers.get("x-goog-upload-command", "").lower().split(",")}
    offset = request.headers.get("x-goog-upload-offset", "0")
    if "upload" not in command or not offset.isdigit():
        raise invalid_argument("send X-Goog-Upload-Command: upload[, finalize] with X-Goog-Upload-Offset")
    data = await read_body(request, stores.settings.max_file_bytes)
    result = await stores.upload_bytes(token, int(offset), data, "finalize" in command)
    if result is None:
        return Response(b"", headers={"x-goog-upload-status": "active"})
    return JSONResponse(result, headers={"x-goog-upload-status": "final"})


FILE_SEARCH_ROUTES = [
    Route("/{version}/fileSearchStores", collection, methods=["GET", "POST"]),
    Route("/{version}/fileSearchStores/{name}", member, methods=["GET", "DELETE", "POST"]),
    Route("/{version}/fileSearchStores/{store}/documents", documents, methods=["GET"]),
    Route("/{version}/fileSearchStores/{store}/documents/{document}", document, methods=["GET", "DELETE"]),
    Route("/{version}/fileSearchStores/{store}/operations/{id}", operation, methods=["GET"]),
    Route("/{version}/fileSearchStores/{store}/upload/operations/{id}", operation, methods=["GET"]),
    Route("/upload/{version}/fileSearchStores/{name}", upload, methods=["POST"]),
]
