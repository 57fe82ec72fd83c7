"""The google_web_search tool (gemini-cli tools/web-search.ts): Gemini's Google Search grounding,
called by the server; the answer with citation markers, then its numbered sources."""

from __future__ import annotations

from django.conf import settings

from gemini_server.scrub import secrets_scrub

from .base import Tool, ToolContext, ToolKind, ToolResult

SEARCH_GENERATION_CONFIG = {"temperature": 0, "topP": 1}


def response_text(response) -> str | None:
    """getResponseText: the first candidate's non-thought text parts, joined."""
    candidates = response.candidates or []
    if not candidates or not candidates[0].content or not candidates[0].content.parts:
        return None
    return "".join(
        part.text for part in candidates[0].content.parts if part.text and not part.thought
    )


def insert_citations(text: str, supports, *, byte_offsets: bool) -> str:
    """Markers like [1][2] at each grounding support's end (UTF-8 byte offsets for search)."""
    insertions = []
    for support in supports or []:
        if support.segment is not None and support.grounding_chunk_indices:
            marker = "".join(f"[{index + 1}]" for index in support.grounding_chunk_indices)
            insertions.append((support.segment.end_index or 0, marker))
    if not insertions:
        return text
    insertions.sort(key=lambda item: -item[0])
    if not byte_offsets:
        chars = list(text)
        for index, marker in insertions:
            chars.insert(index, marker)
        return "".join(chars)
    data = text.encode("utf-8")
    pieces: list[bytes] = []
    last = len(data)
    for index, marker in insertions:
        position = min(index, last)
        pieces[:0] = [marker.encode("utf-8"), data[position:last]]
        last = position
    pieces.insert(0, data[:last])
    return b"".join(pieces).decode("utf-8", errors="replace")


def source_list(chunks, missing_uri: str) -> list[str]:
    lines = []
    for number, chunk in enumerate(chunks, start=1):
        web = chunk.web
        title = (web.title if web else None) or "Untitled"
        uri = (web.uri if web else None) or missing_uri
        lines.append(f"[{number}] {title} ({uri})")
    return lines


class WebSearchTool(Tool):
    name = "google_web_search"
    display_name = "GoogleSearch"
    aliases = ("googleWebSearch",)
    kind = ToolKind.READ

    def check(self, args: dict, ctx: ToolContext) -> str | None:
        if not args["query"].strip():
            return "The 'query' parameter cannot be empty."
        return None

    def describe(self, args: dict, ctx: ToolContext) -> str:
        return f'Searching the web for: "{args.get("query", "")}"'

    async def run(self, args: dict, ctx: ToolContext) -> ToolResult:
        from chat.agent.client import generate_once

        query = args["query"]
        body = {
            "contents": [{"role": "user", "parts": [{"text": query}]}],
            "tools": [{"googleSearch": {}}],
            "generationConfig": SEARCH_GENERATION_CONFIG,
        }
        try:
            response = await generate_once(ctx.model or settings.GEMINI_MODEL, body)
        except Exception as exc:
            message = f'Error during web search for query "{query}": {_error_text(exc)}'
            return ToolResult(output="", error=message, display="Error performing web search.")
        text = response_text(response)
        if not text or not text.strip():
            return ToolResult(
                output=f'No search results or information found for query: "{query}"',
                display="No information found.",
            )
        candidate = response.candidates[0]
        metadata = candidate.grounding_metadata
        sources = (metadata.grounding_chunks if metadata else None) or []
        if sources:
            text = insert_citations(text, metadata.grounding_supports, byte_offsets=True)
            text += "\n\nSources:\n" + "\n".join(source_list(sources, "No URI"))
        return ToolResult(
            output=f'Web search results for "{query}":\n\n{text}',
            display=f'Search results for "{query}" returned.',
            data={
                "sources": [chunk.model_dump(mode="json", exclude_none=True) for chunk in sources]
            },
        )


def _error_text(exc: Exception) -> str:
    message = getattr(exc, "message", None)
    return secrets_scrub(str(message or exc))
