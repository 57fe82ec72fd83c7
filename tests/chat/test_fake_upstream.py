"""Drives the real google-genai SDK against the fake Gemini server to pin its wire behaviour."""

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request

import pytest
from google import genai
from google.genai import errors, types

from devtools.fake_gemini import FakeGemini, serve, thought_signature_for

MODEL = "gemini-2.5-flash"


@pytest.fixture(scope="module")
def fake():
    server = FakeGemini(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean_logs(fake):
    fake.reset()


def make_client(fake, api_key="test-key", api_version="v1beta"):
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=fake.base_url,
            api_version=api_version,
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )


def directive(steps):
    return f"[[fake:{json.dumps(steps)}]]"


def stream(fake, contents, model=MODEL, api_key="test-key"):
    """Collects every chunk of one async streamed answer."""

    async def collect():
        async with make_client(fake, api_key=api_key).aio as client:
            response = await client.models.generate_content_stream(model=model, contents=contents)
            return [chunk async for chunk in response]

    return asyncio.run(collect())


def parts_of(chunk):
    return chunk.candidates[0].content.parts


def http_json(base_url, method, path, body=None, headers=None):
    request = urllib.request.Request(
        base_url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_text_streams_in_order_with_usage_and_finish_reason_on_last_chunk(fake):
    chunks = stream(fake, directive([{"text": ["Hel", "lo, ", "world"]}]))

    assert [chunk.text for chunk in chunks] == ["Hel", "lo, ", "world"]
    assert [chunk.usage_metadata is None for chunk in chunks] == [True, True, False]
    assert [chunk.candidates[0].finish_reason for chunk in chunks] == [None, None, "STOP"]
    usage = chunks[-1].usage_metadata
    assert usage.candidates_token_count == 3  # "Hello, world" is 12 chars
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert {chunk.model_version for chunk in chunks} == {MODEL}
    assert len({chunk.response_id for chunk in chunks}) == 1
    assert fake.streams[0]["status"] == "completed"


def test_plain_string_text_is_split_into_three_chunks(fake):
    text = "one two three four five six"

    chunks = stream(fake, directive([{"text": text}]))

    assert len(chunks) == 3
    assert "".join(chunk.text for chunk in chunks) == text


def test_usage_counts_request_and_answer_characters(fake):
    # Echo demo: prompt 11 chars -> 3, answer "You said: Hello there" 21 -> 6, thought 38 -> 10.
    chunks = stream(fake, "Hello there")

    usage = chunks[-1].usage_metadata
    assert usage.prompt_token_count == 3
    assert usage.candidates_token_count == 6
    assert usage.thoughts_token_count == 10
    assert usage.total_token_count == 19


def test_usage_override_is_sent_verbatim(fake):
    usage = {"promptTokenCount": 900, "candidatesTokenCount": 100, "totalTokenCount": 1000}

    chunks = stream(fake, directive([{"text": "hi", "usage": usage}]))

    assert chunks[-1].usage_metadata.total_token_count == 1000
    assert chunks[-1].usage_metadata.prompt_token_count == 900


def test_function_call_has_args_and_thought_signature(fake):
    call = {"name": "read_file", "args": {"file_path": "notes.txt"}}

    chunks = stream(fake, directive([{"calls": [call]}]))

    assert len(chunks) == 1
    [part] = parts_of(chunks[0])
    assert part.function_call.name == "read_file"
    assert part.function_call.args == {"file_path": "notes.txt"}
    assert part.thought_signature == base64.b64decode(thought_signature_for("read_file"))
    assert chunks[0].function_calls[0].name == "read_file"
    assert chunks[0].candidates[0].finish_reason == "STOP"


def test_parallel_calls_share_one_frame_and_only_the_first_is_signed(fake):
    calls = [
        {"name": "read_file", "args": {"file_path": "a.py"}},
        {"name": "read_file", "args": {"file_path": "b.py"}},
    ]

    chunks = stream(fake, directive([{"calls": calls}]))

    assert len(chunks) == 1
    parts = parts_of(chunks[0])
    assert [part.function_call.args["file_path"] for part in parts] == ["a.py", "b.py"]
    assert parts[0].thought_signature
    assert parts[1].thought_signature is None


def test_thought_part_is_streamed_before_the_text(fake):
    chunks = stream(fake, directive([{"thought": "**Planning** Looking around.", "text": ["ok"]}]))

    [thought] = parts_of(chunks[0])
    assert thought.thought is True
    assert thought.text == "**Planning** Looking around."
    assert chunks[1].text == "ok"
    assert not parts_of(chunks[1])[0].thought


@pytest.mark.parametrize(
    ("code", "status", "error_class"),
    [
        (400, "INVALID_ARGUMENT", errors.ClientError),
        (403, "PERMISSION_DENIED", errors.ClientError),
        (404, "NOT_FOUND", errors.ClientError),
        (429, "RESOURCE_EXHAUSTED", errors.ClientError),
        (500, "INTERNAL", errors.ServerError),
        (503, "UNAVAILABLE", errors.ServerError),
        (504, "DEADLINE_EXCEEDED", errors.ServerError),
    ],
)
def test_scripted_http_error_raises_sdk_error(fake, code, status, error_class):
    with pytest.raises(error_class) as raised:
        stream(fake, directive([{"error": {"code": code}}]))

    assert raised.value.code == code
    assert raised.value.status == status
    assert raised.value.message
    assert fake.streams == []


def test_rate_limit_error_carries_retry_info_and_custom_message(fake):
    error = {"code": 429, "message": "Quota exceeded for today.", "retryDelay": "7s"}

    with pytest.raises(errors.ClientError) as raised:
        stream(fake, directive([{"error": error}]))

    assert raised.value.message == "Quota exceeded for today."
    assert raised.value.details["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
    ]


def test_error_without_retry_delay_has_no_details(fake):
    client = make_client(fake)
    with pytest.raises(errors.ServerError) as raised:
        client.models.generate_content(
            model=MODEL, contents=directive([{"error": {"code": 503, "status": "OVERLOADED"}}])
        )

    assert raised.value.status == "OVERLOADED"
    assert "details" not in raised.value.details["error"]


def test_mid_stream_error_raises_after_the_text_arrived(fake):
    steps = [{"text": ["partial ", "answer"], "midStreamError": {"code": 500}}]
    received = []

    async def consume():
        async with make_client(fake).aio as client:
            response = await client.models.generate_content_stream(
                model=MODEL, contents=directive(steps)
            )
            async for chunk in response:
                received.append(chunk.text)

    with pytest.raises(errors.ServerError) as raised:
        asyncio.run(consume())

    assert received == ["partial ", "answer"]
    assert raised.value.code == 500
    assert raised.value.status == "INTERNAL"
    assert fake.streams[0]["status"] == "error"


def test_hanging_stream_is_marked_disconnected_when_the_client_gives_up(fake):
    received = []
    seen_open = []

    async def consume(client):
        response = await client.models.generate_content_stream(
            model=MODEL, contents=directive([{"text": ["thinking..."], "hang": True}])
        )
        async for chunk in response:
            received.append(chunk.text)
            seen_open.append([row["status"] for row in fake.streams])

    async def scenario():
        async with make_client(fake).aio as client:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(consume(client), timeout=0.5)
            # Checked while the client's loop is still alive, so the disconnect is caused by
            # the cancelled iteration rather than by tearing the loop down.
            return await asyncio.to_thread(fake.wait_for_stream_status, "disconnected", 5.0)

    assert asyncio.run(scenario()) is True
    assert received == ["thinking..."]
    assert seen_open == [["open"]]
    assert fake.streams[0]["frames"] == 1


def test_delay_paces_the_frames(fake):
    arrivals = []

    async def consume():
        async with make_client(fake).aio as client:
            response = await client.models.generate_content_stream(
                model=MODEL, contents=directive([{"text": ["a", "b", "c"], "delay": 0.2}])
            )
            async for _chunk in response:
                arrivals.append(time.monotonic())

    asyncio.run(consume())

    assert len(arrivals) == 3
    assert arrivals[2] - arrivals[0] >= 0.35


def test_unary_generate_content_merges_the_streamed_parts(fake):
    steps = [
        {
            "thought": "**Reading** The file.",
            "text": ["I will ", "read it."],
            "calls": [{"name": "read_file", "args": {"file_path": "a.py"}}],
        }
    ]

    client = make_client(fake)
    response = client.models.generate_content(model=MODEL, contents=directive(steps))

    parts = response.candidates[0].content.parts
    assert [part.thought for part in parts] == [True, None, None]
    assert parts[1].text == "I will read it."
    assert parts[2].function_call.name == "read_file"
    assert parts[2].thought_signature
    assert response.candidates[0].finish_reason == "STOP"
    assert response.usage_metadata.total_token_count > 0
    assert fake.requests[0]["stream"] is False


def test_step_is_chosen_by_model_turns_after_the_prompt(fake):
    steps = [{"text": "first"}, {"text": "second"}]
    contents = [
        types.Content(role="user", parts=[types.Part(text=directive(steps))]),
        types.Content(role="model", parts=[types.Part(text="first")]),
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name="noop", response={"output": "x"})],
        ),
    ]

    second = stream(fake, contents)
    done = stream(fake, [*contents, types.Content(role="model", parts=[types.Part(text="2")])])

    assert "".join(chunk.text for chunk in second) == "second"
    assert "".join(chunk.text for chunk in done) == "Done."


def test_a_new_user_prompt_restarts_the_script(fake):
    contents = [
        types.Content(role="user", parts=[types.Part(text="Hi")]),
        types.Content(role="model", parts=[types.Part(text="You said: Hi")]),
        types.Content(role="user", parts=[types.Part(text="Hello again")]),
    ]

    chunks = stream(fake, contents)

    assert "".join(chunk.text for chunk in chunks[1:]) == "You said: Hello again"


def test_demo_echo_sends_a_thought_then_the_prompt_in_three_chunks(fake):
    chunks = stream(fake, "What is the capital of France?")

    assert parts_of(chunks[0])[0].thought is True
    assert parts_of(chunks[0])[0].text == "**Answering** Echoing the prompt back."
    texts = [chunk.text for chunk in chunks[1:]]
    assert len(texts) == 3
    assert "".join(texts) == "You said: What is the capital of France?"


def run_agent(fake, prompt, files):
    """A minimal agent loop: executes the fake's read_file/replace calls against `files`."""

    def execute(call):
        path = call.args["file_path"]
        if path not in files:
            return {"error": f"File not found: {path}"}
        if call.name == "read_file":
            return {"output": files[path]}
        old, new = call.args["old_string"], call.args["new_string"]
        if old not in files[path]:
            return {"error": f"Failed to edit, could not find the string to replace in {path}"}
        files[path] = files[path].replace(old, new, 1)
        return {"output": f"Successfully modified file: {path}"}

    client = make_client(fake)
    contents = [types.Content(role="user", parts=[types.Part(text=prompt)])]
    calls_made = []
    for _turn in range(5):
        response = client.models.generate_content(model=MODEL, contents=contents)
        contents.append(response.candidates[0].content)
        if not response.function_calls:
            return response.text, calls_made
        calls_made.extend(call.name for call in response.function_calls)
        contents.append(
            types.Content(
                role="user",
                parts=[
                    types.Part.from_function_response(name=call.name, response=execute(call))
                    for call in response.function_calls
                ],
            )
        )
    raise AssertionError("the fake never finished the demo")


def test_demo_change_reads_then_replaces_then_reports(fake):
    files = {"src/app.py": 'print("hello world")\n'}

    answer, calls = run_agent(
        fake, 'Please change "hello world" to "hi there" in src/app.py', files
    )

    assert calls == ["read_file", "replace"]
    assert files["src/app.py"] == 'print("hi there")\n'
    assert answer == 'I changed "hello world" to "hi there" in src/app.py.'
    replace_request = fake.requests[1]["body"]
    # The SDK sends the model's signed call back; Gemini requires that for function calling.
    signed_part = replace_request["contents"][1]["parts"][0]
    assert signed_part["thoughtSignature"] == thought_signature_for("read_file")


def test_demo_change_reports_a_failed_replace(fake):
    files = {"notes.txt": "alpha\n"}

    answer, calls = run_agent(fake, "change beta to gamma in notes.txt.", files)

    assert calls == ["read_file", "replace"]
    assert answer.startswith('I could not change "beta" to "gamma" in notes.txt: Failed to edit')


def test_demo_read_quotes_the_first_line_of_the_file(fake):
    files = {"README.md": "# Gemini server\nMore text.\n"}

    answer, calls = run_agent(fake, "read README.md please", files)

    assert calls == ["read_file"]
    assert answer == "The file README.md starts with: # Gemini server"


def test_demo_read_reports_the_tool_error(fake):
    answer, _calls = run_agent(fake, "read missing.txt", {})

    assert answer == "I could not read missing.txt: File not found: missing.txt"


def test_missing_api_key_is_permission_denied(fake):
    status, body = http_json(
        fake.base_url,
        "POST",
        f"/v1beta/models/{MODEL}:generateContent",
        {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    )

    assert status == 403
    assert body["error"]["status"] == "PERMISSION_DENIED"
    assert fake.requests[0]["hasApiKey"] is False


def test_invalid_api_key_is_rejected_like_google(fake):
    with pytest.raises(errors.ClientError) as raised:
        stream(fake, "hi", api_key="invalid")

    assert raised.value.code == 400
    assert raised.value.status == "INVALID_ARGUMENT"
    assert raised.value.message == "API key not valid. Please pass a valid API key."
    reasons = [detail.get("reason") for detail in raised.value.details["error"]["details"]]
    assert "API_KEY_INVALID" in reasons


def test_unknown_model_is_not_found(fake):
    client = make_client(fake)

    with pytest.raises(errors.ClientError) as generate_error:
        client.models.generate_content(model="models/does-not-exist", contents="hi")
    with pytest.raises(errors.ClientError) as get_error:
        client.models.get(model="does-not-exist")

    assert generate_error.value.code == get_error.value.code == 404
    assert generate_error.value.status == "NOT_FOUND"
    assert "models/does-not-exist is not found" in generate_error.value.message


def test_count_tokens(fake):
    client = make_client(fake)
    response = client.models.count_tokens(model=MODEL, contents="abcdefghi")

    assert response.total_tokens == 3


@pytest.mark.parametrize("api_version", ["v1beta", "v1"])
def test_models_can_be_listed_and_fetched(fake, api_version):
    client = make_client(fake, api_version=api_version)

    names = [model.name for model in client.models.list()]
    model = client.models.get(model="gemini-2.5-pro")

    assert {"models/gemini-2.5-pro", "models/gemini-2.5-flash"} <= set(names)
    assert model.name == "models/gemini-2.5-pro"
    assert model.display_name == "Gemini 2.5 Pro"
    assert "generateContent" in model.supported_actions


def test_models_list_pages(fake):
    client = make_client(fake)
    names = [model.name for model in client.models.list(config={"page_size": 1})]

    assert len(names) == len(set(names)) == 3


def test_request_log_records_what_the_sdk_sent_and_can_be_reset(fake):
    stream(fake, "Hello log")

    [row] = fake.requests
    assert row["path"] == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert row["model"] == MODEL
    assert row["stream"] is True
    assert row["hasApiKey"] is True
    assert row["body"]["contents"] == [{"role": "user", "parts": [{"text": "Hello log"}]}]
    assert http_json(fake.base_url, "GET", "/_fake/requests")[1] == fake.requests
    stream(fake, "Hello again")
    [last] = http_json(fake.base_url, "GET", "/_fake/requests?last=1")[1]
    assert last["body"]["contents"][0]["parts"] == [{"text": "Hello again"}]
    assert len(http_json(fake.base_url, "GET", "/_fake/requests?last=5")[1]) == 2
    status, refused = http_json(fake.base_url, "GET", "/_fake/requests?last=two")
    assert status == 400 and refused["error"]["code"] == 400
    assert "whole number" in refused["error"]["message"]
    assert http_json(fake.base_url, "GET", "/_fake/streams")[1][0]["status"] == "completed"

    assert http_json(fake.base_url, "DELETE", "/_fake/requests")[0] == 200
    assert fake.requests == [] and fake.streams == []


def test_invalid_directive_is_answered_with_a_readable_400(fake):
    with pytest.raises(errors.ClientError) as raised:
        stream(fake, '[[fake:[{"txt": "typo"}]]]')

    assert raised.value.code == 400
    assert "unknown step field(s): txt" in raised.value.message


def test_empty_step_finishes_with_an_empty_candidate(fake):
    chunks = stream(fake, directive({"steps": [{"finishReason": "MAX_TOKENS"}]}))

    assert len(chunks) == 1
    assert chunks[0].candidates[0].finish_reason == "MAX_TOKENS"
    assert chunks[0].candidates[0].content.parts is None


def test_serve_runs_until_cancelled():
    """The coroutine behind `manage.py fake_gemini`."""

    async def scenario():
        ready = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(serve("127.0.0.1", 0, on_ready=ready.set_result))
        base_url = await asyncio.wait_for(ready, 5)
        status, body = await asyncio.to_thread(
            http_json, base_url, "GET", "/v1/models/gemini-2.5-flash", None, {"x-goog-api-key": "k"}
        )
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
        return status, body

    status, body = asyncio.run(scenario())

    assert status == 200
    assert body["name"] == "models/gemini-2.5-flash"
