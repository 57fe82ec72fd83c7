"""The web_fetch tool (gemini-cli tools/web-fetch.ts): the URLs in a prompt processed by a model
call with URL context, or, when that fails, fetched by this server and summarised.

This server fetches public addresses only. A host is resolved first and every address it
resolves to is checked (loopback, private, link-local, shared, multicast, reserved and the like
are refused); the connection then goes to those checked addresses, and each redirect is checked
the same way. Responses are limited in size (10 MB) and time (10 s).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections import OrderedDict
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from django.conf import settings

from gemini_server.scrub import secrets_scrub

from .base import Tool, ToolContext, ToolKind, ToolResult
from .web_search import insert_citations, response_text, source_list

URL_FETCH_TIMEOUT_SECONDS = 10
MAX_CONTENT_LENGTH = 250_000
MAX_FETCH_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 5
USER_AGENT = (
    "Mozilla/5.0 (compatible; Google-Gemini-CLI/1.0; +https://github.com/google-gemini/gemini-cli)"
)
TRUNCATION_WARNING = "\n\n... [Content truncated due to size limit] ..."
RATE_LIMIT_WINDOW_SECONDS = 60
MAX_REQUESTS_PER_WINDOW = 10
_host_history: OrderedDict[str, list[float]] = OrderedDict()


class FetchRefused(Exception):
    """A URL this server will not fetch (its host is not public)."""


# Addresses.


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]
    if address in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_is_public(text: str) -> bool:
    """True only for a globally routable unicast address (an IPv4 one inside IPv6 judged too)."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None and not address_is_public(str(inner)):
            return False
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address the host resolves to (the system resolver)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(info[4][0] for info in infos))


async def checked_addresses(host: str, port: int) -> list[str]:
    """The host's addresses, all of them public, or FetchRefused before any connection."""
    host = host.strip("[]").lower()
    if host in ("localhost", "127.0.0.1") or host.endswith(".localhost"):
        raise FetchRefused(host)
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        addresses = [host]
    except ValueError:
        addresses = await resolve_host(host, port)
    if not addresses or not all(address_is_public(address) for address in addresses):
        raise FetchRefused(host)
    return addresses


async def host_is_blocked(url: str) -> bool:
    try:
        parts = urlsplit(url)
        await checked_addresses(parts.hostname or "", parts.port or _default_port(parts.scheme))
    except FetchRefused:
        return True
    except (ValueError, OSError):
        # Unresolvable here: nothing is fetched from it by this server, the fetch reports it.
        return False
    return False


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


class _PublicResolver(AbstractResolver):
    """aiohttp's resolver for web_fetch: connections go only to checked, public addresses."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        addresses = await checked_addresses(host, port)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": socket.IPPROTO_TCP,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None


# URLs in the prompt.


def _href(token: str) -> str:
    """A WHATWG-like href for an http(s) URL token; ValueError when it is malformed."""
    parts = urlsplit(token)
    host = parts.hostname
    if not host or any(char in host for char in " <>\\^|%"):
        raise ValueError(token)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(token) from None
    if host.startswith("[") or ":" in host:
        ipaddress.IPv6Address(host.strip("[]"))
        host = f"[{host.strip('[]')}]"
    else:
        host = host.encode("idna").decode("ascii").lower()
    netloc = host
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if userinfo:
        netloc = f"{userinfo}@{netloc}"
    if port is not None and port != _default_port(parts.scheme.lower()):
        netloc += f":{port}"
    return urlunsplit(
        (parts.scheme.lower(), netloc, parts.path or "/", parts.query, parts.fragment)
    )


def parse_prompt(text: str) -> tuple[list[str], list[str]]:
    """parsePrompt: the well-formed http(s) URLs in the text, and what is wrong with the rest."""
    valid, errors = [], []
    for token in re.split(r"\s+", text):
        if not token or "://" not in token:
            continue
        scheme = token.split("://", 1)[0]
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
            errors.append(f'Malformed URL detected: "{token}".')
            continue
        if scheme.lower() not in ("http", "https"):
            errors.append(
                f'Unsupported protocol in URL: "{token}". Only http and https are supported.'
            )
            continue
        try:
            valid.append(_href(token))
        except ValueError:
            errors.append(f'Malformed URL detected: "{token}".')
    return valid, errors


def normalize_url(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path[:-1] if parts.path.endswith("/") and len(parts.path) > 1 else parts.path
    return urlunsplit((parts.scheme, parts.netloc.lower(), path, parts.query, parts.fragment))


def github_raw(url: str) -> str:
    parts = urlsplit(url)
    if parts.hostname == "github.com" and "/blob/" in parts.path:
        path = re.sub(r"^/([^/]+/[^/]+)/blob/", r"/\1/", parts.path, count=1)
        return urlunsplit(
            (parts.scheme, "raw.githubusercontent.com", path, parts.query, parts.fragment)
        )
    return url


def _rate_allowed(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    now = time.monotonic()
    history = [
        stamp for stamp in _host_history.get(host, []) if stamp > now - RATE_LIMIT_WINDOW_SECONDS
    ]
    allowed = len(history) < MAX_REQUESTS_PER_WINDOW
    if allowed:
        history.append(now)
    _host_history[host] = history
    _host_history.move_to_end(host)
    while len(_host_history) > 1000:
        _host_history.popitem(last=False)
    return allowed


def sanitize_xml(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&apos;")
    )


def wrap_untrusted(text: str) -> str:
    escaped = text.replace("</untrusted_context>", "&lt;/untrusted_context&gt;")
    return f"<untrusted_context>\n{escaped}\n</untrusted_context>"


def truncate(text: str, limit: int, suffix: str = TRUNCATION_WARNING) -> str:
    return text if len(text) <= limit else text[:limit] + suffix


# HTML to text (html-to-text's output, near enough: block elements on their own lines,
# links as their text, images and scripts left out).

_BLOCK = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tr",
        "ul",
    ]
)
_SKIP = frozenset({"script", "style", "head", "noscript", "template", "img", "svg"})


class _TextExtractor(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0
        self.pre = 0

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP and tag != "img":
            self.skipping += 1
        elif tag == "pre":
            self.pre += 1
        if tag in _BLOCK:
            self.out.append("\n")
        if tag in ("td", "th"):
            self.out.append(" ")

    def handle_endtag(self, tag):
        if tag in _SKIP and tag != "img":
            self.skipping = max(0, self.skipping - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if self.skipping:
            return
        self.out.append(data if self.pre else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.out).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# Fetching.


async def fetch_text(url: str) -> str:
    """The page's text: refused unless public, redirects checked, 10 MB and 10 s at most."""
    connector = aiohttp.TCPConnector(resolver=_PublicResolver(), use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=URL_FETCH_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as http:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https"):
                raise ValueError(f"Unsupported protocol in redirect: {current}")
            # IP literals never reach the resolver: check them (and names) before connecting.
            await checked_addresses(parts.hostname or "", parts.port or _default_port(parts.scheme))
            async with http.get(
                current, headers={"User-Agent": USER_AGENT}, allow_redirects=False
            ) as response:
                if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                    current = urljoin(current, response.headers["Location"])
                    continue
                if response.status >= 400:
                    raise ValueError(
                        f"Request failed with status code {response.status} {response.reason}"
                    )
                body = await _read_limited(response)
                content_type = response.headers.get("Content-Type", "")
                raw = body.decode("utf-8", errors="replace")
                if "text/html" in content_type.lower() or not content_type:
                    return html_to_text(raw)
                return raw
        raise ValueError(f"Too many redirects (more than {MAX_REDIRECTS})")


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > MAX_FETCH_BYTES:
        raise ValueError(f"Content exceeds size limit of {MAX_FETCH_BYTES} bytes")
    chunks, total = [], 0
    async for chunk in response.content.iter_chunked(65536):
        total += len(chunk)
        if total > MAX_FETCH_BYTES:
            raise ValueError(f"Content exceeds size limit of {MAX_FETCH_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, FetchRefused):
        return f"Access to blocked or private host {exc} is not allowed."
    if isinstance(exc, TimeoutError):
        return f"Request timed out after {URL_FETCH_TIMEOUT_SECONDS * 1000}ms"
    return secrets_scrub(str(getattr(exc, "message", None) or exc) or type(exc).__name__)


class WebFetchTool(Tool):
    name = "web_fetch"
    display_name = "WebFetch"
    aliases = ("webFetch",)
    kind = ToolKind.FETCH

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        prompt = args["prompt"]
        if not prompt.strip():
            return (
                "The 'prompt' parameter cannot be empty and must contain URL(s) and instructions."
            )
        valid, errors = parse_prompt(prompt)
        if errors:
            return "Error(s) in prompt URLs:\n- " + "\n- ".join(errors)
        if not valid:
            return (
                "The 'prompt' must contain at least one valid URL (starting with http:// or "
                "https://)."
            )
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        prompt = args.get("prompt", "")
        shown = prompt[:97] + "..." if len(prompt) > 100 else prompt
        return f'Processing URLs and instructions from prompt: "{shown}"'

    def confirmation_details(self, args: dict, ctx: ToolContext) -> dict:
        valid, _ = parse_prompt(args.get("prompt", ""))
        return {
            "type": "info",
            "title": "Confirm Web Fetch",
            "prompt": args.get("prompt", ""),
            "urls": [github_raw(url) for url in valid],
        }

    async def run(self, args: dict, ctx: ToolContext) -> ToolResult:
        prompt = args["prompt"]
        valid, _ = parse_prompt(prompt)
        to_fetch, skipped = [], []
        for url in dict.fromkeys(normalize_url(url) for url in valid):
            if await host_is_blocked(url):
                skipped.append(f"[Blocked Host] {url}")
            elif not _rate_allowed(url):
                skipped.append(f"[Rate limit exceeded] {url}")
            else:
                to_fetch.append(url)
        if not to_fetch:
            message = f"All requested URLs were skipped: {', '.join(skipped)}"
            return ToolResult(output="", error=message, display=f"Error: {message}")
        model = ctx.model or settings.GEMINI_MODEL
        try:
            return await self._primary(prompt, to_fetch, skipped, model)
        except Exception:
            return await self._fallback(prompt, to_fetch, model)

    async def _primary(
        self, prompt: str, urls: list[str], skipped: list[str], model: str
    ) -> ToolResult:
        from chat.agent.client import generate_once

        text = (
            "Follow the user's instructions to process the authorized URLs.\n\n"
            f"<user_instructions>\n{sanitize_xml(prompt)}\n</user_instructions>\n\n"
            "<authorized_urls>\n" + "\n".join(urls) + "\n</authorized_urls>\n"
        )
        response = await generate_once(
            model,
            {
                "contents": [{"role": "user", "parts": [{"text": text}]}],
                "tools": [{"urlContext": {}}],
                "generationConfig": {"temperature": 0, "topP": 1},
            },
        )
        answer = response_text(response) or ""
        metadata = response.candidates[0].grounding_metadata if response.candidates else None
        chunks = (metadata.grounding_chunks if metadata else None) or []
        if not answer.strip() and not chunks:
            raise ValueError("Primary fetch returned no content")
        if metadata is not None:
            answer = insert_citations(answer, metadata.grounding_supports, byte_offsets=False)
        if chunks:
            answer += "\n\nSources:\n" + "\n".join(source_list(chunks, "Unknown URI"))
        if skipped:
            answer = (
                "[Warning] The following URLs were skipped:\n"
                + "\n".join(skipped)
                + f"\n\n{answer}"
            )
        return ToolResult(output=wrap_untrusted(answer), display="Content processed from prompt.")

    async def _fallback(self, prompt: str, urls: list[str], model: str) -> ToolResult:
        from chat.agent.client import generate_once

        successes: dict[str, str] = {}
        errors: dict[str, str] = {}
        for url in dict.fromkeys(urls):
            try:
                successes[url] = truncate(await fetch_text(github_raw(url)), MAX_CONTENT_LENGTH)
            except Exception as exc:
                errors[url] = _error_text(exc)
        if not successes:
            message = "All fallback fetch attempts failed: " + ", ".join(
                f"{url}: {error}" for url, error in errors.items()
            )
            return ToolResult(output="", error=message, display=f"Error: {message}")
        budget, remaining = MAX_CONTENT_LENGTH, len(successes)
        contents: dict[str, str] = {}
        for url, content in sorted(successes.items(), key=lambda item: len(item[1])):
            share = budget // remaining
            contents[url] = truncate(content, min(len(content), share))
            budget -= len(contents[url])
            remaining -= 1
        aggregated = "\n".join(
            f'<source url="{sanitize_xml(url)}">\n{sanitize_xml(contents[url])}\n</source>'
            if url in contents
            else f'<source url="{sanitize_xml(url)}">\nError: {sanitize_xml(errors.get(url, "Unknown error"))}\n</source>'
            for url in dict.fromkeys(urls)
        )
        text = (
            "Follow the user's instructions below using the provided webpage content.\n\n"
            f"<user_instructions>\n{sanitize_xml(prompt)}\n</user_instructions>\n\n"
            "I was unable to access the URL(s) directly using the primary fetch tool. Instead, I "
            "have fetched the raw content of the page(s). Please use the following content to "
            "answer the request. Do not attempt to access the URL(s) again.\n\n"
            f"<content>\n{aggregated}\n</content>\n"
        )
        try:
            response = await generate_once(
                model,
                {
                    "contents": [{"role": "user", "parts": [{"text": text}]}],
                    "generationConfig": {"temperature": 0, "topP": 1},
                },
            )
        except Exception as exc:
            message = f"Error during fallback processing: {_error_text(exc)}"
            return ToolResult(output="", error=message, display=f"Error: {message}")
        return ToolResult(
            output=wrap_untrusted(response_text(response) or ""),
            display=f"Content for {len(urls)} URL(s) processed using fallback fetch.",
        )
