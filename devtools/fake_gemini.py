"""Fake Gemini Developer API server that lets the real google-genai SDK run offline."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import math
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_VERSIONS = ("v1beta", "v1", "v1alpha")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
INVALID_API_KEY = "invalid"

STATUS_BY_CODE = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# The messages Google sends for these codes, so clients that display them look realistic.
MESSAGE_BY_CODE = {
    400: "Request contains an invalid argument.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}

MODEL_CATALOG = {
    "gemini-2.5-pro": ("Gemini 2.5 Pro", "Stable release (June 17th, 2025) of Gemini 2.5 Pro"),
    "gemini-2.5-flash": (
        "Gemini 2.5 Flash",
        "Stable version of Gemini 2.5 Flash, our mid-size multimodal model that supports up "
        "to 1 million tokens, released in June of 2025.",
    ),
    "gemini-2.5-flash-lite": (
        "Gemini 2.5 Flash-Lite",
        "Stable version of Gemini 2.5 Flash-Lite, released in July of 2025",
    ),
}

DEMO_THOUGHT = "**Answering** Echoing the prompt back."
DIRECTIVE_OPENER = "[[fake:"
STEP_FIELDS = frozenset(
    {
        "text",
        "thought",
        "calls",
        "delay",
        "error",
        "midStreamError",
        "hang",
        "finishReason",
        "usage",
        "attempts",
    }
)
# Text the server adds to the user's turn (its environment context, its loop nudge, a snapshot of
# compressed history): not the user's prompt, so the fake reads past it.
SERVER_TEXT_OPENERS = ("<session_context>", "System: Potential loop detected", "<state_snapshot>")
SNAPSHOT_MARKER = "<state_snapshot>"

CHANGE_PATTERN = re.compile(
    r'\bchange\s+(?:"(?P<old_quoted>[^"]*)"|(?P<old>\S+))\s+to\s+'
    r'(?:"(?P<new_quoted>[^"]*)"|(?P<new>\S+))\s+in\s+(?P<file>\S+)',
    re.IGNORECASE,
)
READ_PATTERN = re.compile(r"\bread\s+[\"'`]?(?P<file>[\w~./-]*\.\w+)", re.IGNORECASE)
TRAILING_PUNCTUATION = ".,;:!?\"'`)"


class DirectiveError(ValueError):
    """A `[[fake:...]]` directive that cannot be followed."""


@dataclass
class ScriptedError:
    code: int
    message: str
    status: str
    retry_delay: str | None = None

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.status, self.retry_delay)


@dataclass
class Step:
    texts: list[str] = field(default_factory=list)
    thought: str | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    error: ScriptedError | None = None
    mid_stream_error: ScriptedError | None = None
    hang: bool = False
    finish_reason: str = "STOP"
    usage: dict[str, Any] | None = None
    # The same request asked again (a retry) gets the next of these; the last one repeats.
    attempts: list[Step] = field(default_factory=list)


@dataclass
class Conversation:
    prompt: str
    step: int
    function_responses: list[dict[str, Any]]


def status_for_code(code: int) -> str:
    return STATUS_BY_CODE.get(code, "UNKNOWN")


def error_body(
    code: int,
    message: str | None = None,
    status: str | None = None,
    retry_delay: str | None = None,
    details: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code,
        "message": message or MESSAGE_BY_CODE.get(code, "Unknown error."),
        "status": status or status_for_code(code),
    }
    all_details = list(details or [])
    if retry_delay is not None:
        all_details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        )
    if all_details:
        error["details"] = all_details
    return {"error": error}


def error_response(code: int, message: str | None = None, **kwargs: Any) -> web.Response:
    return json_response(error_body(code, message, **kwargs), status=code)


def json_response(payload: Any, status: int = 200) -> web.Response:
    # Google pretty-prints unary responses; the SDK does not care, people reading curl do.
    return web.Response(
        text=json.dumps(payload, indent=2, ensure_ascii=False),
        status=status,
        content_type="application/json",
        charset="UTF-8",
    )


def model_resource(model_id: str) -> dict[str, Any]:
    display_name, description = MODEL_CATALOG.get(model_id, (model_id, f"Fake {model_id}"))
    return {
        "name": f"models/{model_id}",
        "version": "001",
        "displayName": display_name,
        "description": description,
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": [
            "generateContent",
            "countTokens",
            "createCachedContent",
            "batchGenerateContent",
        ],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": True,
    }


def model_exists(model_id: str) -> bool:
    # Any gemini-* id is served so the project can pick newer model names without editing
    # the fake; everything else (e.g. "does-not-exist") is a 404 like Google's.
    return model_id in MODEL_CATALOG or model_id.startswith("gemini-")


def model_not_found(model_id: str, version: str, method: str) -> web.Response:
    return error_response(
        404,
        f"models/{model_id} is not found for API version {version}, or is not supported for "
        f"{method}. Call ListModels to see the list of available models and their supported "
        "methods.",
    )


def thought_signature_for(call_name: str) -> str:
    return base64.b64encode(f"fake-thought-signature:{call_name}".encode()).decode()


def new_response_id() -> str:
    return secrets.token_urlsafe(16)


def token_count(chars: int) -> int:
    return math.ceil(chars / 4)


def part_chars(part: dict[str, Any]) -> int:
    if isinstance(part.get("text"), str):
        return len(part["text"])
    if isinstance(part.get("functionCall"), dict):
        call = part["functionCall"]
        return len(str(call.get("name", ""))) + len(json.dumps(call.get("args") or {}))
    if isinstance(part.get("functionResponse"), dict):
        return len(json.dumps(part["functionResponse"].get("response") or {}))
    return 0


def content_chars(content: Any) -> int:
    if not isinstance(content, dict):
        return 0
    parts = content.get("parts") or []
    return sum(part_chars(part) for part in parts if isinstance(part, dict))


def request_chars(body: dict[str, Any]) -> int:
    contents = body.get("contents") or []
    # countTokens may wrap a whole generate request instead of sending bare contents.
    wrapped = body.get("generateContentRequest")
    if isinstance(wrapped, dict):
        contents = list(contents) + list(wrapped.get("contents") or [])
    chars = sum(content_chars(content) for content in contents)
    return chars + content_chars(body.get("systemInstruction"))


def split_into_chunks(text: str, pieces: int = 3) -> list[str]:
    """Splits text on word boundaries into at most `pieces` chunks that join back to it."""
    words = re.split(r"(?<=\s)(?=\S)", text)
    count = min(pieces, len(words))
    size, extra = divmod(len(words), count)
    chunks, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        chunks.append("".join(words[start:end]))
        start = end
    return chunks


def first_line(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    lines = text.splitlines()
    return lines[0] if lines else ""


def read_conversation(contents: list[Any]) -> Conversation:
    prompt_index = -1
    prompt = ""
    for index in range(len(contents) - 1, -1, -1):
        content = contents[index]
        if not isinstance(content, dict) or content.get("role", "user") != "user":
            continue
        texts = [
            part["text"]
            for part in content.get("parts") or []
            if isinstance(part, dict)
            and isinstance(part.get("text"), str)
            and not part.get("thought")
            and not part["text"].startswith(SERVER_TEXT_OPENERS)
        ]
        if texts:
            prompt_index, prompt = index, "\n".join(texts)
            break
    later = [c for c in contents[prompt_index + 1 :] if isinstance(c, dict)]
    step = sum(1 for content in later if content.get("role") == "model")
    function_responses = [
        part["functionResponse"]
        for content in later
        for part in content.get("parts") or []
        if isinstance(part, dict) and isinstance(part.get("functionResponse"), dict)
    ]
    return Conversation(prompt=prompt, step=step, function_responses=function_responses)


def parse_error_spec(raw: Any, field_name: str) -> ScriptedError:
    if not isinstance(raw, dict) or not isinstance(raw.get("code"), int):
        raise DirectiveError(f'"{field_name}" must be an object with an integer "code"')
    code = raw["code"]
    if not 400 <= code <= 599:
        raise DirectiveError(f'"{field_name}.code" must be an HTTP error code (400-599)')
    retry_delay = raw.get("retryDelay")
    if retry_delay is not None and not isinstance(retry_delay, str):
        raise DirectiveError(f'"{field_name}.retryDelay" must be a string such as "7s"')
    return ScriptedError(
        code=code,
        message=str(raw.get("message") or MESSAGE_BY_CODE.get(code, "Unknown error.")),
        status=str(raw.get("status") or status_for_code(code)),
        retry_delay=retry_delay,
    )


def parse_calls(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise DirectiveError('"calls" must be a list of {"name", "args"} objects')
    calls = []
    for call in raw:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise DirectiveError('each call needs a string "name"')
        args = call.get("args", {})
        if not isinstance(args, dict):
            raise DirectiveError(f'"args" of call {call["name"]!r} must be an object')
        calls.append({"name": call["name"], "args": args})
    return calls


def parse_step(raw: Any) -> Step:
    if not isinstance(raw, dict):
        raise DirectiveError("each step must be an object")
    unknown = sorted(set(raw) - STEP_FIELDS)
    if unknown:
        raise DirectiveError(f"unknown step field(s): {', '.join(unknown)}")
    step = Step()
    if raw.get("attempts") is not None:
        attempts = raw["attempts"]
        if not isinstance(attempts, list) or not attempts or set(raw) != {"attempts"}:
            raise DirectiveError('"attempts" must be a non-empty list of steps, alone in its step')
        step.attempts = [parse_step(item) for item in attempts]
        return step
    text = raw.get("text")
    if isinstance(text, str):
        step.texts = split_into_chunks(text)
    elif isinstance(text, list) and all(isinstance(item, str) for item in text):
        step.texts = list(text)
    elif text is not None:
        raise DirectiveError('"text" must be a string or a list of strings')
    if raw.get("thought") is not None:
        if not isinstance(raw["thought"], str):
            raise DirectiveError('"thought" must be a string')
        step.thought = raw["thought"]
    if raw.get("calls") is not None:
        step.calls = parse_calls(raw["calls"])
    delay = raw.get("delay", 0)
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
        raise DirectiveError('"delay" must be a non-negative number of seconds')
    step.delay = float(delay)
    if raw.get("error") is not None:
        step.error = parse_error_spec(raw["error"], "error")
    if raw.get("midStreamError") is not None:
        step.mid_stream_error = parse_error_spec(raw["midStreamError"], "midStreamError")
    if not isinstance(raw.get("hang", False), bool):
        raise DirectiveError('"hang" must be true or false')
    step.hang = raw.get("hang", False)
    if not isinstance(raw.get("finishReason", "STOP"), str):
        raise DirectiveError('"finishReason" must be a string such as "STOP"')
    step.finish_reason = raw.get("finishReason", "STOP")
    if raw.get("usage") is not None:
        if not isinstance(raw["usage"], dict):
            raise DirectiveError('"usage" must be an object (usageMetadata)')
        step.usage = raw["usage"]
    return step


def directive_steps(prompt: str) -> list[Step] | None:
    """Returns the steps scripted in the prompt, or None when it has no directive."""
    start = prompt.find(DIRECTIVE_OPENER)
    if start < 0:
        return None
    # raw_decode rather than a regex, because the JSON itself may contain "]]".
    json_start = start + len(DIRECTIVE_OPENER)
    try:
        script, json_end = json.JSONDecoder().raw_decode(prompt, json_start)
    except json.JSONDecodeError as exc:
        raise DirectiveError(f"invalid JSON: {exc.msg} at offset {exc.pos - json_start}") from exc
    if not prompt.startswith("]]", json_end):
        raise DirectiveError('the JSON must be followed by "]]"')
    if isinstance(script, dict):
        if set(script) != {"steps"}:
            raise DirectiveError('an object directive must be {"steps": [...]}')
        script = script["steps"]
    if not isinstance(script, list):
        raise DirectiveError('the directive must be a list of steps or {"steps": [...]}')
    return [parse_step(raw) for raw in script]


def text_step(text: str) -> Step:
    return Step(texts=split_into_chunks(text))


def latest_response(conversation: Conversation, name: str) -> dict[str, Any] | None:
    matching = [fr for fr in conversation.function_responses if fr.get("name") == name]
    if matching:
        return matching[-1].get("response") or {}
    return None


def change_steps(match: re.Match[str], conversation: Conversation) -> list[Step]:
    old = match.group("old_quoted") if match.group("old_quoted") is not None else match["old"]
    new = match.group("new_quoted") if match.group("new_quoted") is not None else match["new"]
    path = match["file"].rstrip(TRAILING_PUNCTUATION) or match["file"]
    read = {"name": "read_file", "args": {"file_path": path}}
    replace = {
        "name": "replace",
        "args": {"file_path": path, "old_string": old, "new_string": new},
    }
    outcome = latest_response(conversation, "replace") or {}
    if "error" in outcome:
        summary = f'I could not change "{old}" to "{new}" in {path}: {first_line(outcome["error"])}'
    else:
        summary = f'I changed "{old}" to "{new}" in {path}.'
    return [Step(calls=[read]), Step(calls=[replace]), text_step(summary)]


def read_steps(path: str, conversation: Conversation) -> list[Step]:
    outcome = latest_response(conversation, "read_file")
    if outcome is None:
        summary = f"I did not receive the contents of {path}."
    elif "error" in outcome:
        summary = f"I could not read {path}: {first_line(outcome['error'])}"
    else:
        summary = f"The file {path} starts with: {first_line(outcome.get('output', ''))}"
    return [Step(calls=[{"name": "read_file", "args": {"file_path": path}}]), text_step(summary)]


def demo_steps(conversation: Conversation) -> list[Step]:
    change = CHANGE_PATTERN.search(conversation.prompt)
    if change:
        return change_steps(change, conversation)
    read = READ_PATTERN.search(conversation.prompt)
    if read:
        return read_steps(read["file"], conversation)
    echo = Step(texts=split_into_chunks(f"You said: {conversation.prompt}"), thought=DEMO_THOUGHT)
    return [echo]


def system_text(body: dict[str, Any]) -> str:
    instruction = body.get("systemInstruction")
    parts = instruction.get("parts") if isinstance(instruction, dict) else None
    return "".join(part.get("text", "") for part in parts or [] if isinstance(part, dict))


def snapshot_step(contents: list[Any]) -> Step:
    """The answer to a compression call: a <state_snapshot> naming what it summarised."""
    user_texts = [
        part["text"]
        for content in contents[:-1]
        if isinstance(content, dict) and content.get("role") == "user"
        for part in content.get("parts") or []
        if isinstance(part, dict)
        and isinstance(part.get("text"), str)
        and not part["text"].startswith(SERVER_TEXT_OPENERS[:2])
    ]
    # The oldest request: the user's goal, or the goal of a snapshot being updated.
    goal = first_line(user_texts[0])[:80] if user_texts else "(no request found)"
    summarised = len(contents) - 1
    return Step(
        texts=[
            f"{SNAPSHOT_MARKER}\n    <overall_goal>{goal}</overall_goal>\n"
            f"    <recent_actions>Summarised {summarised} earlier messages.</recent_actions>\n"
            "</state_snapshot>"
        ]
    )


def choose_step(body: dict[str, Any], attempt: int = 1) -> Step:
    """Picks the scripted answer for a generate request (raises DirectiveError).

    `attempt` counts the requests with these very contents so far (this one included): a step
    with `attempts` answers a retry with its next entry.
    """
    contents = body.get("contents")
    contents = contents if isinstance(contents, list) else []
    if SNAPSHOT_MARKER in system_text(body):
        return snapshot_step(contents)
    conversation = read_conversation(contents)
    steps = directive_steps(conversation.prompt)
    if steps is None:
        steps = demo_steps(conversation)
    if conversation.step < len(steps):
        step = steps[conversation.step]
        if step.attempts:
            return step.attempts[min(attempt, len(step.attempts)) - 1]
        return step
    return text_step("Done.")


def content_frames(step: Step) -> list[list[dict[str, Any]]]:
    """The parts of each SSE frame, in the order Gemini streams them."""
    frames: list[list[dict[str, Any]]] = []
    if step.thought is not None:
        frames.append([{"text": step.thought, "thought": True}])
    frames.extend([{"text": text}] for text in step.texts)
    if step.calls:
        frames.append(call_parts(step.calls))
    return frames


def call_parts(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"functionCall": {"name": call["name"], "args": call["args"]}} for call in calls
    ]
    # Gemini 2.5 signs only the first call of a parallel batch.
    parts[0]["thoughtSignature"] = thought_signature_for(calls[0]["name"])
    return parts


def usage_metadata(body: dict[str, Any], step: Step) -> dict[str, Any]:
    if step.usage is not None:
        return step.usage
    prompt_tokens = token_count(request_chars(body))
    answered = sum(len(text) for text in step.texts) + sum(
        len(call["name"]) + len(json.dumps(call["args"])) for call in step.calls
    )
    candidate_tokens = token_count(answered)
    thought_tokens = token_count(len(step.thought or ""))
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": candidate_tokens,
        "totalTokenCount": prompt_tokens + candidate_tokens + thought_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
    }
    if thought_tokens:
        usage["thoughtsTokenCount"] = thought_tokens
    return usage


def generate_response(
    parts: list[dict[str, Any]],
    model_id: str,
    response_id: str,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    content: dict[str, Any] = {"parts": parts, "role": "model"} if parts else {"role": "model"}
    candidate: dict[str, Any] = {"content": content}
    if finish_reason is not None:
        candidate["finishReason"] = finish_reason
    candidate["index"] = 0
    payload: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        payload["usageMetadata"] = usage
    payload["modelVersion"] = model_id
    payload["responseId"] = response_id
    return payload


def requested_tools(body: dict[str, Any]) -> set[str]:
    """The kinds of tool a request offers the model (googleSearch, urlContext, ...)."""
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    return {key for tool in tools if isinstance(tool, dict) for key in tool}


def latest_user_text(body: dict[str, Any]) -> str:
    contents = body.get("contents")
    return read_conversation(contents if isinstance(contents, list) else []).prompt


def search_candidate(query: str) -> dict[str, Any]:
    """A Google Search grounded answer, as Gemini sends it: text, sources and the byte ranges
    of the text each source supports. "[no results]" in the query gives an empty answer."""
    if "[no results]" in query:
        return {"content": {"role": "model"}, "finishReason": "STOP", "index": 0}
    first = f'Fake search results for "{query}": the first source explains it.'
    second = " The second source adds détails."
    text = first + second
    first_end = len(first.encode())
    chunks = [
        {
            "web": {
                "uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/fake-1",
                "title": "example.com",
            }
        },
        {
            "web": {
                "uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/fake-2",
                "title": "docs.example.org",
            }
        },
    ]
    supports = [
        {
            "segment": {"startIndex": 0, "endIndex": first_end, "text": first},
            "groundingChunkIndices": [0],
            "confidenceScores": [0.92],
        },
        {
            "segment": {
                "startIndex": first_end + 1,
                "endIndex": len(text.encode()),
                "text": second.strip(),
            },
            "groundingChunkIndices": [0, 1],
            "confidenceScores": [0.81, 0.77],
        },
    ]
    return {
        "content": {"parts": [{"text": text}], "role": "model"},
        "finishReason": "STOP",
        "index": 0,
        "groundingMetadata": {
            "webSearchQueries": [query],
            "searchEntryPoint": {"renderedContent": '<div class="container">fake</div>'},
            "groundingChunks": chunks,
            "groundingSupports": supports,
        },
    }


def url_context_candidate(prompt: str) -> dict[str, Any]:
    """An answer with URL context: the fake cannot fetch, so it names what it was given (and
    answers nothing for URLs containing "no-url-context", as when Gemini cannot reach them)."""
    section = re.search(r"<authorized_urls>\n(.*?)\n</authorized_urls>", prompt, re.DOTALL)
    urls = section.group(1).split("\n") if section else []
    if any("no-url-context" in url for url in urls):
        # What Gemini answers when it could not retrieve the pages: nothing to go on.
        return {"content": {"role": "model"}, "finishReason": "STOP", "index": 0}
    text = f"Fake summary of {len(urls)} page(s): " + ", ".join(urls)
    return {
        "content": {"parts": [{"text": text}], "role": "model"},
        "finishReason": "STOP",
        "index": 0,
        "urlContextMetadata": {
            "urlMetadata": [
                {"retrievedUrl": url, "urlRetrievalStatus": "URL_RETRIEVAL_STATUS_SUCCESS"}
                for url in urls
            ]
        },
    }


def built_in_tool_answer(body: dict[str, Any], model_id: str) -> dict[str, Any] | None:
    """The answer to a request offering Google Search or URL context, else None."""
    tools = requested_tools(body)
    if "googleSearch" in tools:
        candidate = search_candidate(latest_user_text(body))
    elif "urlContext" in tools:
        candidate = url_context_candidate(latest_user_text(body))
    else:
        return None
    prompt_tokens = token_count(request_chars(body))
    answer_tokens = token_count(content_chars(candidate.get("content")))
    return {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": answer_tokens,
            "totalTokenCount": prompt_tokens + answer_tokens,
        },
        "modelVersion": model_id,
        "responseId": new_response_id(),
    }


def merged_parts(step: Step) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if step.thought is not None:
        parts.append({"text": step.thought, "thought": True})
    if step.texts:
        parts.append({"text": "".join(step.texts)})
    if step.calls:
        parts.extend(call_parts(step.calls))
    return parts


def sse_frame(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\r\n\r\n".encode()


class FakeLog:
    """Thread-safe record of generate requests and streaming responses."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._requests: list[dict[str, Any]] = []
        self._streams: list[dict[str, Any]] = []
        # How many requests came with the same model and contents (a retry's attempt number),
        # counted as they come: a scan of every logged request made each answer slower than the
        # last, which benchmarks would have read as the server's cost.
        self._attempts: dict[tuple[Any, str], int] = {}

    def add_request(self, row: dict[str, Any]) -> int:
        """Logs a request; returns how many logged requests had its contents (it included)."""
        body = row.get("body")
        contents = body.get("contents") if isinstance(body, dict) else None
        key = (row.get("model"), json.dumps(contents, sort_keys=True) if body is not None else "")
        with self._changed:
            self._requests.append(row)
            self._changed.notify_all()
            if not isinstance(body, dict):
                return 0
            self._attempts[key] = self._attempts.get(key, 0) + 1
            return self._attempts[key]

    def open_stream(self, stream_id: str, model_id: str) -> dict[str, Any]:
        row = {"id": stream_id, "model": model_id, "status": "open", "frames": 0}
        with self._changed:
            self._streams.append(row)
            self._changed.notify_all()
        return row

    def update_stream(self, row: dict[str, Any], **changes: Any) -> None:
        with self._changed:
            row.update(changes)
            self._changed.notify_all()

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._changed:
            return copy.deepcopy(self._requests)

    def requests_last(self, count: int) -> list[dict[str, Any]]:
        with self._changed:
            return copy.deepcopy(self._requests[-count:] if count else [])

    @property
    def streams(self) -> list[dict[str, Any]]:
        with self._changed:
            return copy.deepcopy(self._streams)

    def reset(self) -> None:
        with self._changed:
            self._requests = []
            self._streams = []
            self._attempts = {}
            self._changed.notify_all()

    def wait_for_stream_status(self, status: str, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: any(row["status"] == status for row in self._streams), timeout
            )


LOG_KEY = web.AppKey("fake_log", FakeLog)
CLOSING_KEY = web.AppKey("closing", asyncio.Event)


def auth_failure(request: web.Request) -> web.Response | None:
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if not key:
        return error_response(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    if key == INVALID_API_KEY:
        message = "API key not valid. Please pass a valid API key."
        return error_response(
            400,
            message,
            details=[
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": message,
                },
            ],
        )
    return None


def unknown_version(version: str) -> web.Response | None:
    if version in API_VERSIONS:
        return None
    return error_response(404, f"API version {version} is not supported by this server.")


async def list_models(request: web.Request) -> web.Response:
    failure = unknown_version(request.match_info["version"]) or auth_failure(request)
    if failure:
        return failure
    model_ids = list(MODEL_CATALOG)
    try:
        page_size = int(request.query.get("pageSize") or len(model_ids))
        offset = int(request.query.get("pageToken") or 0)
    except ValueError:
        return error_response(400, "Invalid pageSize or pageToken.")
    page = model_ids[offset : offset + max(page_size, 1)]
    payload: dict[str, Any] = {"models": [model_resource(model_id) for model_id in page]}
    next_offset = offset + len(page)
    if next_offset < len(model_ids):
        payload["nextPageToken"] = str(next_offset)
    return json_response(payload)


async def get_model(request: web.Request) -> web.Response:
    version = request.match_info["version"]
    failure = unknown_version(version) or auth_failure(request)
    if failure:
        return failure
    model_id = request.match_info["model"]
    if not model_exists(model_id):
        return model_not_found(model_id, version, "getModel")
    return json_response(model_resource(model_id))


async def model_method(request: web.Request) -> web.StreamResponse:
    version = request.match_info["version"]
    model_id, _, method = request.match_info["target"].rpartition(":")
    if method not in {"generateContent", "streamGenerateContent", "countTokens"} or not model_id:
        return error_response(404, f"Method not found: {request.match_info['target']}")
    raw_body = await request.text()
    try:
        body = json.loads(raw_body) if raw_body else {}
    except json.JSONDecodeError:
        body = None
    streaming = method == "streamGenerateContent"
    attempt = 1
    if method != "countTokens":
        attempt = request.app[LOG_KEY].add_request(
            {
                "path": request.path,
                "model": model_id,
                "stream": streaming,
                "body": body,
                "hasApiKey": bool(
                    request.headers.get("x-goog-api-key") or request.query.get("key")
                ),
            }
        )
    failure = unknown_version(version) or auth_failure(request)
    if failure:
        return failure
    if not model_exists(model_id):
        return model_not_found(model_id, version, method)
    if not isinstance(body, dict):
        return error_response(400, "Invalid JSON payload received. Expected a JSON object.")
    if method == "countTokens":
        total = token_count(request_chars(body))
        return json_response(
            {
                "totalTokens": total,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}],
            }
        )
    grounded = built_in_tool_answer(body, model_id)
    if grounded is not None:
        if streaming:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(sse_frame(grounded))
            await response.write_eof()
            return response
        return json_response(grounded)
    try:
        step = choose_step(body, attempt)
    except DirectiveError as exc:
        return error_response(400, f"Invalid [[fake:...]] directive: {exc}")
    if step.error is not None:
        # Google's errors may quote the request, its API key included: "{apiKey}" stands for it.
        payload = step.error.body()
        key = request.headers.get("x-goog-api-key") or request.query.get("key") or ""
        payload["error"]["message"] = payload["error"]["message"].replace("{apiKey}", key)
        return json_response(payload, status=step.error.code)
    if streaming:
        if request.query.get("alt") != "sse":
            return error_response(400, "This fake only serves streamGenerateContent with alt=sse.")
        return await stream_answer(request, model_id, step, body)
    return await unary_answer(request, model_id, step, body)


async def unary_answer(
    request: web.Request, model_id: str, step: Step, body: dict[str, Any]
) -> web.StreamResponse:
    frame_count = len(content_frames(step))
    if step.delay and frame_count > 1:
        await asyncio.sleep(step.delay * (frame_count - 1))
    if step.hang:
        # Never answers; aiohttp cancels this handler when the client hangs up.
        await request.app[CLOSING_KEY].wait()
        return error_response(503)
    if step.mid_stream_error is not None:
        error = step.mid_stream_error
        return json_response(error.body(), status=error.code)
    payload = generate_response(
        merged_parts(step),
        model_id,
        new_response_id(),
        finish_reason=step.finish_reason,
        usage=usage_metadata(body, step),
    )
    return json_response(payload)


async def stream_answer(
    request: web.Request, model_id: str, step: Step, body: dict[str, Any]
) -> web.StreamResponse:
    log = request.app[LOG_KEY]
    response_id = new_response_id()
    row = log.open_stream(response_id, model_id)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    frames = content_frames(step)
    ends_normally = step.mid_stream_error is None and not step.hang
    if ends_normally and not frames:
        frames = [[]]
    try:
        await response.prepare(request)
        for index, parts in enumerate(frames):
            if index and step.delay:
                await asyncio.sleep(step.delay)
            is_last = index == len(frames) - 1
            # Like Gemini, only the frame that finishes the answer carries finishReason/usage.
            payload = generate_response(
                parts,
                model_id,
                response_id,
                finish_reason=step.finish_reason if ends_normally and is_last else None,
                usage=usage_metadata(body, step) if ends_normally and is_last else None,
            )
            await response.write(sse_frame(payload))
            log.update_stream(row, frames=row["frames"] + 1)
        if step.mid_stream_error is not None:
            if frames and step.delay:
                await asyncio.sleep(step.delay)
            await response.write(sse_frame(step.mid_stream_error.body()))
            log.update_stream(row, frames=row["frames"] + 1, status="error")
        elif step.hang:
            await request.app[CLOSING_KEY].wait()
            log.update_stream(row, status="disconnected")
        else:
            log.update_stream(row, status="completed")
        await response.write_eof()
    except (asyncio.CancelledError, ConnectionResetError):
        log.update_stream(row, status="disconnected")
        raise
    return response


async def fake_requests(request: web.Request) -> web.Response:
    """Every request served, oldest first; `?last=N` the last N only (a 400 for anything but a
    whole number)."""
    log = request.app[LOG_KEY]
    if "last" not in request.query:
        return json_response(log.requests)
    last = request.query["last"]
    if not last.isdigit():
        return error_response(400, f"last must be a whole number of requests, not {last!r}")
    return json_response(log.requests_last(int(last)))


async def fake_streams(request: web.Request) -> web.Response:
    return json_response(request.app[LOG_KEY].streams)


async def reset_fake_logs(request: web.Request) -> web.Response:
    request.app[LOG_KEY].reset()
    return json_response({})


async def not_found(request: web.Request) -> web.Response:
    return error_response(404, f"Method not found: {request.method} {request.path}")


async def release_hanging_handlers(app: web.Application) -> None:
    app[CLOSING_KEY].set()


def build_app(log: FakeLog | None = None) -> web.Application:
    app = web.Application()
    app[LOG_KEY] = log or FakeLog()
    app[CLOSING_KEY] = asyncio.Event()
    app.on_shutdown.append(release_hanging_handlers)
    app.router.add_get("/_fake/requests", fake_requests)
    app.router.add_delete("/_fake/requests", reset_fake_logs)
    app.router.add_get("/_fake/streams", fake_streams)
    app.router.add_get("/{version}/models", list_models)
    app.router.add_get("/{version}/models/{model}", get_model)
    app.router.add_post("/{version}/models/{target}", model_method)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


async def start_server(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Starts listening and returns the runner and the base URL actually bound."""
    # handler_cancellation turns a client hang-up into CancelledError in the handler, which is
    # how hanging and delayed streams notice the client went away.
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=2.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    return runner, f"http://{host}:{bound_port}"


async def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Runs the fake in the current event loop until cancelled."""
    runner, base_url = await start_server(build_app(), host, port)
    try:
        if on_ready is not None:
            on_ready(base_url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


class FakeGemini:
    """The fake server running in a background thread with its own event loop."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self.host = host
        self.port = port
        self.base_url = ""
        self._log = FakeLog()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._startup_error: BaseException | None = None

    def start(self) -> FakeGemini:
        if self._thread is not None:
            raise RuntimeError("FakeGemini is already running")
        ready = threading.Event()
        self._startup_error = None
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="fake-gemini", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            app = build_app(self._log)
            self._runner, self.base_url = loop.run_until_complete(
                start_server(app, self.host, self.port)
            )
            self.port = int(self.base_url.rsplit(":", 1)[1])
        except BaseException as exc:
            self._startup_error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        if self._runner is not None:
            future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            future.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop = None
        self._runner = None

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self._log.requests

    @property
    def streams(self) -> list[dict[str, Any]]:
        return self._log.streams

    def reset(self) -> None:
        self._log.reset()

    def wait_for_stream_status(self, status: str, timeout: float = 5.0) -> bool:
        return self._log.wait_for_stream_status(status, timeout)
