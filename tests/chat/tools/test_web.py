"""google_web_search (tools/web-search.ts) and web_fetch (tools/web-fetch.ts): server-side calls
through the project's client to the fake upstream; web_fetch refuses what is not public."""

import pytest

from chat.agent.tools import ToolContext, tool_lookup, tool_run
from chat.agent.tools import web_fetch as web_fetch_module
from chat.agent.tools.base import ToolKind
from chat.agent.tools.web_fetch import (
    FetchRefused,
    address_is_public,
    checked_addresses,
    html_to_text,
)
from chat.turns.approval import needs_confirmation
from tests.loopback import app_serving

SEARCH_TEXT = (
    'Fake search results for "{q}": the first source explains it.[1] The second source adds '
    "détails.[1][2]\n\nSources:\n"
    "[1] example.com (https://vertexaisearch.cloud.google.com/grounding-api-redirect/fake-1)\n"
    "[2] docs.example.org (https://vertexaisearch.cloud.google.com/grounding-api-redirect/fake-2)"
)


@pytest.fixture
def stub_dns(monkeypatch):
    """A resolver that answers from a table and records what it was asked (no traffic)."""
    table: dict[str, list[str]] = {}
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in table:
            raise OSError(f"no such host: {host}")
        return table[host]

    monkeypatch.setattr(web_fetch_module, "resolve_host", resolve)
    return table, asked


async def test_web_search_cites_its_sources(call, fake_gemini):
    """Citation markers at each support's UTF-8 byte offset, then the numbered source list."""
    result = await call("google_web_search", query="asyncio timeouts")
    assert result.output == 'Web search results for "asyncio timeouts":\n\n' + SEARCH_TEXT.format(
        q="asyncio timeouts"
    )
    assert result.display == 'Search results for "asyncio timeouts" returned.'
    body = fake_gemini.requests[-1]["body"]
    assert fake_gemini.requests[-1]["path"].endswith(":generateContent")
    assert body["tools"] == [{"googleSearch": {}}]
    assert body["contents"] == [{"role": "user", "parts": [{"text": "asyncio timeouts"}]}]


async def test_web_search_without_results_and_with_errors(call, fake_gemini, settings):
    empty = await call("google_web_search", query="[no results] anything")
    assert (
        empty.output == 'No search results or information found for query: "[no results] anything"'
    )
    assert (await call("google_web_search", query="  ")).error == (
        "The 'query' parameter cannot be empty."
    )
    settings.GEMINI_API_KEY = ""
    failed = await call("google_web_search", query="x")
    assert failed.error == (
        'Error during web search for query "x": The server has no GEMINI_API_KEY configured; an '
        "administrator must set it."
    )


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/admin", "http://localhost/x", "http://[::1]:8080/", "http://0.0.0.0/"],
)
async def test_web_fetch_refuses_loopback_urls(call, fake_gemini, url):
    result = await call("web_fetch", prompt=f"Summarize {url} please")
    assert result.error == f"All requested URLs were skipped: [Blocked Host] {url}"
    assert fake_gemini.requests == []


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.0.0.7"],
        ["172.16.4.1"],
        ["192.168.1.20"],
        ["169.254.169.254"],
        ["100.64.0.1"],
        ["fe80::1"],
        ["fd00::2"],
        ["::ffff:127.0.0.1"],
        ["::ffff:10.1.2.3"],
        ["93.184.216.34", "192.168.1.2"],
        ["224.0.0.1"],
    ],
)
async def test_web_fetch_refuses_private_and_link_local_addresses_by_resolving_first(
    call, fake_gemini, stub_dns, addresses
):
    """Every address the name resolves to is checked before any connection: one non-public
    address is enough to refuse, and nothing is fetched nor asked of the model."""
    table, asked = stub_dns
    table["intranet.example.com"] = addresses
    result = await call("web_fetch", prompt="Read https://intranet.example.com/wiki")
    assert result.error == (
        "All requested URLs were skipped: [Blocked Host] https://intranet.example.com/wiki"
    )
    assert asked == ["intranet.example.com"]
    assert fake_gemini.requests == []
    with pytest.raises(FetchRefused):
        await checked_addresses("intranet.example.com", 443)


def test_address_policy():
    for public in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"):
        assert address_is_public(public)
    for private in (
        "127.0.0.1",
        "10.1.1.1",
        "172.31.0.1",
        "192.168.0.1",
        "169.254.0.1",
        "100.100.100.100",
        "0.0.0.0",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::abcd",
        "fc00::1",
        "::ffff:192.168.0.1",
        "2002:c0a8:0101::1",
        "64:ff9b::a00:1",
        "not-an-address",
    ):
        assert not address_is_public(private), private


async def test_web_fetch_processes_public_urls_with_url_context(call, fake_gemini, stub_dns):
    table, _ = stub_dns
    table["docs.example.com"] = ["93.184.216.34"]
    result = await call(
        "web_fetch",
        prompt="Summarize https://docs.example.com/guide/ and http://127.0.0.1/secret",
    )
    assert result.output == (
        "<untrusted_context>\n[Warning] The following URLs were skipped:\n"
        "[Blocked Host] http://127.0.0.1/secret\n\n"
        "Fake summary of 1 page(s): https://docs.example.com/guide\n</untrusted_context>"
    )
    assert result.display == "Content processed from prompt."
    body = fake_gemini.requests[-1]["body"]
    assert body["tools"] == [{"urlContext": {}}]
    sent = body["contents"][0]["parts"][0]["text"]
    assert sent == (
        "Follow the user's instructions to process the authorized URLs.\n\n<user_instructions>\n"
        "Summarize https://docs.example.com/guide/ and http://127.0.0.1/secret\n"
        "</user_instructions>\n\n<authorized_urls>\nhttps://docs.example.com/guide\n"
        "</authorized_urls>\n"
    )


async def test_web_fetch_prompt_validation(call):
    assert (await call("web_fetch", prompt=" ")).error == (
        "The 'prompt' parameter cannot be empty and must contain URL(s) and instructions."
    )
    assert (await call("web_fetch", prompt="summarize example.com")).error == (
        "The 'prompt' must contain at least one valid URL (starting with http:// or https://)."
    )
    assert (await call("web_fetch", prompt="get ftp://files.example.com/a and http://")).error == (
        "Error(s) in prompt URLs:\n"
        '- Unsupported protocol in URL: "ftp://files.example.com/a". Only http and https are '
        "supported.\n"
        '- Malformed URL detected: "http://".'
    )


def test_web_fetch_asks_in_default_mode_only(ctx):
    details = tool_lookup("web_fetch").confirmation_details(
        {"prompt": "Explain https://github.com/o/r/blob/main/a.py"}, ctx
    )
    assert details == {
        "type": "info",
        "title": "Confirm Web Fetch",
        "prompt": "Explain https://github.com/o/r/blob/main/a.py",
        "urls": ["https://raw.githubusercontent.com/o/r/main/a.py"],
    }
    assert needs_confirmation(ToolKind.FETCH, "default", [], "web_fetch", {})
    assert not needs_confirmation(ToolKind.FETCH, "autoEdit", [], "web_fetch", {})
    assert not needs_confirmation(ToolKind.FETCH, "yolo", [], "web_fetch", {})
    assert not needs_confirmation(ToolKind.OTHER, "default", [], "write_todos", {})


def test_html_becomes_text():
    page = (
        "<html><head><title>T</title><style>p{}</style></head><body><h1>Title</h1>"
        "<p>Some <a href='/x'>linked</a> text.</p><script>evil()</script><img src=a.png>"
        "<ul><li>one</li><li>two</li></ul></body></html>"
    )
    assert html_to_text(page) == "Title\n\nSome linked text.\n\none\n\ntwo"


@pytest.mark.django_db(transaction=True)
async def test_direct_runs_use_the_sessions_model(fake_gemini, make_session):
    from asgiref.sync import sync_to_async

    from sessions_app.workspace import session_workspace

    session = await sync_to_async(make_session)(model="gemini-2.5-pro")
    ctx = ToolContext(session_workspace(session), str(session.id), session.model_name)
    await tool_run("google_web_search", {"query": "q"}, ctx)
    assert fake_gemini.requests[-1]["model"] == "gemini-2.5-pro"


async def test_web_fetch_falls_back_to_fetching_and_summarising(
    call, fake_gemini, stub_dns, monkeypatch
):
    """web-fetch.ts executeFallback: when URL context gives nothing, the pages are fetched here
    and summarised by a second model call (the fetch itself is replaced: tests stay on loopback)."""
    table, _ = stub_dns
    table["no-url-context.example.com"] = ["93.184.216.34"]
    fetched = []

    async def fetch_text(url: str) -> str:
        fetched.append(url)
        return "Page <text> & more"

    monkeypatch.setattr(web_fetch_module, "fetch_text", fetch_text)
    result = await call("web_fetch", prompt="Summarize https://no-url-context.example.com/a")
    assert fetched == ["https://no-url-context.example.com/a"]
    assert result.display == "Content for 1 URL(s) processed using fallback fetch."
    assert result.output.startswith("<untrusted_context>\n") and result.output.endswith(
        "\n</untrusted_context>"
    )
    fallback = fake_gemini.requests[-1]["body"]
    assert "tools" not in fallback
    assert fallback["contents"][0]["parts"][0]["text"] == (
        "Follow the user's instructions below using the provided webpage content.\n\n"
        "<user_instructions>\nSummarize https://no-url-context.example.com/a\n"
        "</user_instructions>\n\nI was unable to access the URL(s) directly using the primary "
        "fetch tool. Instead, I have fetched the raw content of the page(s). Please use the "
        "following content to answer the request. Do not attempt to access the URL(s) again.\n\n"
        '<content>\n<source url="https://no-url-context.example.com/a">\n'
        "Page &lt;text&gt; &amp; more\n</source>\n</content>\n"
    )


async def test_fetch_limits_size_and_checks_every_redirect(monkeypatch):
    """fetch_text against a loopback server, with the address policy widened to that one
    loopback address: a redirect to a private address is refused before it is followed, and a
    body over 10 MB is cut off."""
    from aiohttp import web

    async def page(request):
        return web.Response(text="<h1>Hi</h1><p>there</p>", content_type="text/html")

    async def big(request):
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"x" * 65536
        for _ in range(200):
            await response.write(chunk)
        return response

    async def redirect(request):
        raise web.HTTPFound("http://10.1.2.3/internal")

    app = web.Application()
    app.router.add_get("/page", page)
    app.router.add_get("/big", big)
    app.router.add_get("/redirect", redirect)
    real_check = web_fetch_module.checked_addresses

    async def loopback_allowed(host: str, port_: int) -> list[str]:
        if host == "127.0.0.1":
            return [host]
        return await real_check(host, port_)

    monkeypatch.setattr(web_fetch_module, "checked_addresses", loopback_allowed)
    async with app_serving(app) as base:
        assert await web_fetch_module.fetch_text(f"{base}/page") == "Hi\n\nthere"
        with pytest.raises(ValueError, match="Content exceeds size limit of 10485760 bytes"):
            await web_fetch_module.fetch_text(f"{base}/big")
        with pytest.raises(FetchRefused):
            await web_fetch_module.fetch_text(f"{base}/redirect")
