"""The web chat client: one page at `/` whose scripts talk to the public API only (the reference client)."""

from django.http import HttpResponse
from django.template.loader import render_to_string

from gemini_server.health import get_only

# The page loads its own scripts and styles and talks to this origin only; model output can
# never run as script here, even if a rendering bug let markup through.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


@get_only
async def web_client(request):
    """The page itself: no login, no cookie; the scripts sign in against /api/v1/auth/login."""
    response = HttpResponse(render_to_string("web_client/index.html"))
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response["Cache-Control"] = "no-cache"
    return response
