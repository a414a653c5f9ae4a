"""``/compute-backend/images/{sha256}``: is an Apptainer image held for a site, and upload one.

The upload is the raw image as the request body, read chunk by chunk from the ASGI stream
(never parsed or buffered by FastAPI) and exempt from the platform's other body limits.
Any signed-in user may ask and upload: a digest only names content the caller already has.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from mantik.server.api.deps import CurrentUser
from mantik.server.api.error_docs import COMPUTE_ERRORS
from mantik.server.compute.errors import ImageTooLarge
from mantik.server.compute.images import ImageCache, check_digest
from mantik.server.compute.service import ComputeService

PREFIX = "/compute-backend/images/"
LIMIT_HEADER = "X-Mantik-Max-Image-Bytes"
# After a 413, what the client still sends is read and dropped up to this much, so that it
# gets to read the answer; a client far over the limit is cut off instead.
_DRAIN_BYTES = 256 * 1024**2

router = APIRouter(prefix=PREFIX.rstrip("/"), tags=["images"], responses=COMPUTE_ERRORS)

Site = Annotated[str | None, Query(max_length=64, description="ComputeSite name (default: local).")]
UnicoreApiUrl = Annotated[
    str | None, Query(max_length=4096, description="Or the site's UnicoreApiUrl.")
]


class StoredImageView(BaseModel):
    digest: str
    size: int
    site: str


def _cache(request: Request, site: str | None, unicore_api_url: str | None) -> ImageCache:
    service: ComputeService = request.app.state.compute
    return service.image_cache(service.site_of(site, unicore_api_url))


def _limit(request: Request, cache: ImageCache) -> int:
    max_bytes: int = request.app.state.settings.max_image_bytes
    return min(max_bytes, cache.limit)


@router.head("/{digest}", responses={200: {}, 404: {}})
def has_image(
    request: Request,
    user: CurrentUser,
    digest: str,
    site: Site = None,
    unicore_api_url: UnicoreApiUrl = None,
) -> Response:
    """200 when the site's cache holds the image (it then counts as just used), else 404.
    Either way the largest image the platform accepts is in ``X-Mantik-Max-Image-Bytes``."""
    cache = _cache(request, site, unicore_api_url)
    headers = {LIMIT_HEADER: str(_limit(request, cache))}
    return Response(status_code=200 if cache.use(digest) else 404, headers=headers)


@router.put("/{digest}", status_code=201, response_model=StoredImageView)
async def put_image(
    request: Request,
    user: CurrentUser,
    digest: str,
    site: Site = None,
    unicore_api_url: UnicoreApiUrl = None,
) -> StoredImageView | Response:
    """Store the request body as the image whose sha256 is ``digest`` (verified first)."""
    service: ComputeService = request.app.state.compute
    target = service.site_of(site, unicore_api_url)
    cache = service.image_cache(target)
    max_bytes = request.app.state.settings.max_image_bytes
    check_digest(digest)
    chunks = request.stream()
    try:
        declared = request.headers.get("content-length", "")
        if declared.isdigit():
            cache.admit(int(declared), max_bytes)
        stored = await cache.receive(digest, chunks, max_bytes)
    except ImageTooLarge:
        await _drain(chunks)
        raise
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is left to read it; nothing was kept
    return StoredImageView(digest=stored.digest, size=stored.size, site=target.name)


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    drained = 0
    with contextlib.suppress(ClientDisconnect):
        async for chunk in chunks:
            drained += len(chunk)
            if drained > _DRAIN_BYTES:
                return
