"""The web chat client's page at `/`: served without a login, with its own assets, offline, CSP-clean."""

import re
import urllib.request
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "web_client"
MODULE_IMPORT = re.compile(r"""\bimport\s*(?:[^"'();]*?\bfrom\s*)?\(?\s*["']([^"']+)["']""")


def page_assets(html: str) -> list[str]:
    """Every URL the page's tags load (scripts, styles, icons)."""
    return re.findall(r"""<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)\"""", html)


def module_graph() -> dict[str, list[str]]:
    """Each of the client's JavaScript files, with the specifiers it imports."""
    return {
        path.name: MODULE_IMPORT.findall(path.read_text())
        for path in sorted(STATIC_DIR.glob("*.js"))
    }


def test_the_page_is_served_at_the_root_without_a_login(client):
    response = client.get("/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    # Nothing to sign in to here: the scripts sign in against the API and keep the JWT themselves.
    assert not response.cookies
    html = response.content.decode()
    assert '<script type="module" src="/static/web_client/app.js"></script>' in html
    assert 'href="/static/web_client/app.css"' in html


def test_the_page_sends_a_content_security_policy_its_scripts_can_live_with(client):
    response = client.get("/")
    html = response.content.decode()
    policy = dict(
        directive.partition(" ")[::2]
        for directive in response["Content-Security-Policy"].split("; ")
    )

    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    # ... which holds because the page has no inline script, no inline handler, no inline style.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert "style=" not in html and "<style" not in html


def test_no_asset_comes_from_another_host(client):
    html = client.get("/").content.decode()
    texts = [html] + [path.read_text() for path in sorted(STATIC_DIR.iterdir())]

    for url in page_assets(html):
        assert url.startswith("/static/web_client/"), url
    for specifiers in module_graph().values():
        for specifier in specifiers:
            assert specifier.startswith("./") and specifier.endswith(".js"), specifier
    for text in texts:
        assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", text)
        assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", text)
        assert "cdn" not in text.lower()


def test_every_asset_the_page_and_its_modules_load_exists(client):
    html = client.get("/").content.decode()
    wanted = {url.removeprefix("/static/") for url in page_assets(html)}
    for name, specifiers in module_graph().items():
        wanted |= {f"web_client/{specifier.removeprefix('./')}" for specifier in specifiers}
        wanted.add(f"web_client/{name}")

    for asset in sorted(wanted):
        assert finders.find(asset), f"{asset} is referenced but not among the static files"
    assert {"web_client/app.js", "web_client/markdown.js", "web_client/api.js"} <= wanted


def test_the_client_never_writes_markup_from_strings():
    # Model output reaches the page as text nodes only; these are the ways a string becomes markup.
    for path in sorted(STATIC_DIR.glob("*.js")):
        source = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, f"{path.name} uses {sink}"
        assert "new Function" not in source


def test_other_methods_answer_in_the_contract_shape(client):
    response = client.post("/")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "bad_request"
    assert response["Allow"] == "GET"


def test_the_server_serves_the_page_and_its_assets_with_production_settings(live_servers):
    # DJANGO_DEBUG=false: the static files still come from this server (SERVE_STATIC), and the
    # security headers do not get in the way of plain HTTP when TLS redirects are off.
    base = live_servers(
        DJANGO_DEBUG="false",
        SECRET_KEY="a-production-like-secret-key-for-this-test-0123456789",
        JWT_SECRET="a-production-like-jwt-secret-for-this-test-0123456789",
        SECURE_SSL_REDIRECT="false",
    )

    with urllib.request.urlopen(f"{base}/", timeout=10) as answer:
        html = answer.read().decode()
        assert answer.status == 200
        assert answer.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert answer.headers["Set-Cookie"] is None
    assets = set(page_assets(html))
    assets |= {f"/static/web_client/{name}" for name in module_graph()}
    content_types = {}
    for url in sorted(assets):
        with urllib.request.urlopen(f"{base}{url}", timeout=10) as answer:
            assert answer.status == 200, url
            assert answer.read() == (STATIC_DIR / url.rsplit("/", 1)[1]).read_bytes()
            content_types[url.rsplit(".", 1)[1]] = answer.headers["Content-Type"].split(";")[0]
    # Browsers run module scripts only when served with a JavaScript type.
    assert content_types["js"] in ("text/javascript", "application/javascript")
    assert content_types["css"] == "text/css"
