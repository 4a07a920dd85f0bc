"""The public tracking links in what is sent: open pixel, click redirect, one-click unsubscribe
(RFC 8058). No bearer token (recipients follow them); each is checked against its HMAC
signature instead, and a link that does not verify is a 404 that records nothing."""

import html
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.marketing import engagement
from services.marketing.tracking import BadToken, LinkKind, verify
from shared.app import SessionDep
from shared.errors import NotFound

router = APIRouter(prefix="/t", tags=["tracking"])

# A transparent 1x1 GIF.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def _send_id(request: Request, kind: LinkKind, token: str, url: str = "") -> uuid.UUID:
    secret = request.app.state.settings.tracking_key()
    try:
        return verify(secret, kind, token, url)
    except BadToken as exc:
        raise NotFound("unknown or tampered link", field="token") from exc


@router.get("/o/{token}", include_in_schema=False)
async def opened(token: str, request: Request, session: SessionDep) -> Response:
    await engagement.record(session, _send_id(request, LinkKind.open, token), "opened")
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get("/c/{token}", include_in_schema=False)
async def clicked(
    token: str, request: Request, session: SessionDep, u: Annotated[str, Query(max_length=4000)]
) -> Response:
    """Redirects only to the URL the link was signed for (never an open redirect)."""
    await engagement.record(session, _send_id(request, LinkKind.click, token, u), "clicked")
    return RedirectResponse(u, status_code=302, headers=NO_STORE)


@router.get("/u/{token}", include_in_schema=False)
async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    """A GET only asks: mail scanners prefetch links, so only the POST unsubscribes."""
    _send_id(request, LinkKind.unsubscribe, token)
    action = html.escape(str(request.url.path), quote=True)
    return HTMLResponse(
        "<!doctype html><html><body><form method='post' action='"
        + action
        + "'><p>Stop receiving these messages?</p>"
        "<button type='submit' name='List-Unsubscribe' value='One-Click'>Unsubscribe</button>"
        "</form></body></html>",
        headers=NO_STORE,
    )


@router.post("/u/{token}", include_in_schema=False)
async def unsubscribe(token: str, request: Request, session: SessionDep) -> HTMLResponse:
    """RFC 8058 one-click unsubscribe (``List-Unsubscribe=One-Click`` body), or the page's form."""
    await engagement.record(session, _send_id(request, LinkKind.unsubscribe, token), "unsubscribed")
    return HTMLResponse(
        "<!doctype html><html><body><p>You are unsubscribed.</p></body></html>", headers=NO_STORE
    )
