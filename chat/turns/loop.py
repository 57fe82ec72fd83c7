"""One agent turn, as gemini-cli runs it: stream the model, run its tool calls, repeat until it answers.

A turn runs in its own task and publishes typed events; transports only read them. Confirmations
and cancels reach it through the channel layer, so they can come from any process.
"""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import suppress

import aiohttp
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from google.genai import errors as genai_errors

from chat.agent import events as ev
from chat.agent.client import GeminiNotConfigured, generate_stream, thinking_supported
from chat.agent.events import AgentEvent
from chat.agent.history import parts_merge
from chat.agent.tools import (
    ToolContext,
    ToolKind,
    ToolResult,
    function_response_parts,
    tool_declarations,
    tool_prepare,
)
from chat.models import MessageRole
from chat.tools_run import tool_call_begin, tool_call_record
from chat.turns.control import tool_always_allow, turn_begin
from chat.turns.conversation import Conversation, history_steps
from chat.turns.slot import turn_decisions_since, turn_heartbeat, turn_release
from chat.turns.store import message_store
from gemini_server.groups import turn_group
from gemini_server.layer import STOP as RECEIVER_STOP
from gemini_server.layer import receiver_stop
from gemini_server.scrub import secrets_scrub
from monitoring.models import AuditAction
from monitoring.services import aevent_record
from sessions_app.models import ApprovalMode, Session
from sessions_app.workspace import PathRefused, Workspace, session_workspace

logger = logging.getLogger(__name__)

CORE_INSTRUCTION = """You are an interactive coding agent working for a software engineer, as gemini-cli does.
The engineer's project is in the workspace directory /workspace; every path you use is inside it
(relative paths are relative to /workspace). Use the tools to read, search, edit and run code there.
Before changing a file, read it. Prefer small, precise edits with `replace`. Explain briefly what
you did when you are done. Shell commands run in a sandbox without network access."""

MEMORY_FILE = "GEMINI.md"
MEMORY_MAX_CHARS = 100_000
CANCELLED_TEXT = "[Operation Cancelled] Reason: User cancelled the operation."
CUT_OFF_TEXT = "The model's answer was cut off before this call could run."
DENIED_TEXT = "[Operation Cancelled] Reason: User did not allow tool call"
HEARTBEAT_SECONDS = 30
BINARY_RECEIVED_TEXT = "Binary content received. Proceeding with analysis."
SYNTHETIC_THOUGHT_SIGNATURE = "skip_thought_signature_validator"
# How late a confirmation or cancel may arrive when its channel-layer message was lost.
DECISION_POLL_SECONDS = 2
CONFIRMATION_TIMEOUT_SECONDS = 600


class TurnInterrupted(Exception):
    """The turn was cancelled by a user or because its last listener left."""


class TurnStopped(Exception):
    """The turn must end early with an error event (upstream failure, a loop guard)."""

    def __init__(
        self, code: str, message: str, *, retryable: bool = False, extra: dict | None = None
    ):
        super().__init__(message)
        self.code, self.message, self.retryable, self.extra = code, message, retryable, extra or {}


def upstream_failure(exc: BaseException) -> TurnStopped:
    """Maps what the SDK raised to the contract's error codes."""
    if isinstance(exc, GeminiNotConfigured):
        return TurnStopped("upstream_unavailable", str(exc), extra={"reason": "not_configured"})
    if isinstance(exc, genai_errors.APIError):
        message = secrets_scrub(exc.message or str(exc))
        if exc.code == 429:
            return TurnStopped(
                "rate_limited",
                f"The model service is rate limiting requests: {message}",
                retryable=True,
                extra={"retryAfter": _retry_delay(exc.details)},
            )
        if exc.code and exc.code >= 500:
            return TurnStopped(
                "upstream_unavailable", f"The model service failed: {message}", retryable=True
            )
        return TurnStopped("upstream_error", message)
    if isinstance(exc, (TimeoutError, aiohttp.ClientError)):
        return TurnStopped(
            "upstream_unavailable", "The model service did not answer in time", retryable=True
        )
    return TurnStopped(
        "upstream_error", f"The model answer could not be read: {type(exc).__name__}"
    )


def _retry_delay(details) -> float | None:
    """Seconds from Google's RetryInfo (`"retryDelay": "7s"`), when it sent one."""
    error = details.get("error", details) if isinstance(details, dict) else {}
    for item in error.get("details", []) if isinstance(error, dict) else []:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            with suppress(ValueError):
                return float(delay[:-1])
    return None


def _thought(text: str) -> dict:
    """gemini-cli's reading of a thought: `**Subject** description`."""
    text = text.strip()
    if text.startswith("**"):
        end = text.find("**", 2)
        if end > 2:
            return {"subject": text[2:end].strip(), "description": text[end + 2 :].strip()}
    return {"subject": "", "description": text}


def _needs_confirmation(kind: ToolKind, mode: str, always: list[str], name: str) -> bool:
    """gemini-cli's approval rules: reads (and the todo list) never ask; edits and web fetches
    ask in default only; the shell asks unless yolo."""
    if kind in (ToolKind.READ, ToolKind.OTHER) or name in always or mode == ApprovalMode.YOLO:
        return False
    return not (mode == ApprovalMode.AUTO_EDIT and kind in (ToolKind.EDIT, ToolKind.FETCH))


def _usage(metadata) -> dict:
    prompt = metadata.prompt_token_count or 0
    completion = (metadata.candidates_token_count or 0) + (metadata.thoughts_token_count or 0)
    total = metadata.total_token_count or (prompt + completion)
    return {"promptTokens": prompt, "completionTokens": completion, "totalTokens": total}


def _system_instruction(session: Session) -> str:
    sections = [CORE_INSTRUCTION]
    if session.config.get("systemInstruction"):
        sections.append(session.config["systemInstruction"])
    try:
        # Through the workspace module: GEMINI.md may be a link a shell command swaps at will.
        data = Workspace(session_workspace(session)).read_head(MEMORY_FILE, MEMORY_MAX_CHARS * 4)
    except (OSError, PathRefused):
        data = None
    if data is not None:
        text = data.decode("utf-8", errors="replace")[:MEMORY_MAX_CHARS]
        sections.append(
            f"Context from /workspace/{MEMORY_FILE} (the project's notes and memories):\n{text}"
        )
    return "\n\n".join(sections)


class Turn:
    """A running turn: start it, read its events, confirm or cancel it, wait for it."""

    def __init__(
        self,
        *,
        session: Session,
        user,
        turn_id,
        text: str,
        ip=None,
        cancel_when_unwatched: bool = True,
    ):
        self.session = session
        # A turn started over WebSocket stops when its last socket leaves; one streamed over
        # SSE belongs to that HTTP client, and only its disconnect (or a cancel) stops it.
        self.cancel_when_unwatched = cancel_when_unwatched
        self.user = user
        self.turn_id = turn_id
        self.text = text
        self.conversation: Conversation | None = None
        self.ip = ip
        self.context = ToolContext(
            workspace=session_workspace(session),
            session_id=str(session.id),
            model=session.model_name,
        )
        # Binary parts read by tools that the model gets after the batch's responses.
        self._injections: list[dict] = []
        self._queue: asyncio.Queue[AgentEvent] | None = None
        self._task: asyncio.Task | None = None
        self._current: asyncio.Task | None = None
        self._cancelled = False
        self._confirmations: dict[str, asyncio.Future] = {}
        self._usage = {"promptTokens": 0, "completionTokens": 0, "totalTokens": 0}
        self._last_message_id = ""

    # Control, from transports.

    def start(self) -> None:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(), name=f"turn-{self.session.id}")

    async def events(self) -> AsyncIterator[AgentEvent]:
        """Every event of the turn, ending with `done`."""
        self.start()
        while True:
            event = await self._queue.get()
            yield event
            if event.type == ev.DONE:
                return

    def cancel(self) -> None:
        """Stops the turn at its next interruptible point; what was produced is kept."""
        self._cancelled = True
        if self._current is not None and not self._current.done():
            self._current.cancel()
        for future in self._confirmations.values():
            if not future.done():
                future.cancel()

    async def wait(self) -> None:
        """Until the turn has stored everything and released the session."""
        if self._task is not None:
            await asyncio.shield(self._task)

    # The loop.

    async def next_event(self, timeout: float) -> AgentEvent | None:
        """The next event, or None when `timeout` passes first (time for a keep-alive)."""
        self.start()
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None

    def _emit(self, type_: str, data: dict) -> None:
        self._queue.put_nowait(AgentEvent(type_, data))

    async def _interruptible(self, coroutine):
        """Runs a step a cancel may cut short (the model stream, a confirmation, a tool)."""
        if self._cancelled:
            coroutine.close()
            raise TurnInterrupted
        self._current = asyncio.ensure_future(coroutine)
        try:
            return await self._current
        except asyncio.CancelledError:
            if self._cancelled and not _task_cancelling():
                raise TurnInterrupted from None
            raise
        finally:
            self._current = None

    async def _run(self) -> None:
        finish_reason = "STOP"
        layer, channel, background = get_channel_layer(), None, []
        try:
            # The default prefix: channels_redis receives for one prefix at a time per process, so
            # a channel of its own would stall every socket's channel while this one waits.
            background = [asyncio.create_task(self._watch())]
            try:
                channel = await layer.new_channel()
                await layer.group_add(turn_group(self.session.id), channel)
                background.insert(0, asyncio.create_task(self._listen(layer, channel)))
            except Exception:
                # Without the channel layer (Redis away) decisions still come, from the database.
                logger.warning("Turn in session %s runs without the channel layer", self.session.id)
                channel = None
            await self._open_conversation()
            finish_reason = await self._loop()
        except TurnInterrupted:
            finish_reason = "CANCELLED"
        except TurnStopped as stop:
            finish_reason = "ERROR"
            await self._fail(stop)
        except Exception as exc:
            logger.exception("Turn failed in session %s", self.session.id)
            finish_reason = "ERROR"
            await self._fail(
                TurnStopped(
                    "internal",
                    "The turn failed unexpectedly",
                    extra={"exception": type(exc).__name__},
                )
            )
        finally:
            listener = background[0] if channel is not None and background else None
            for task in background:
                if task is not listener:
                    task.cancel()
            if listener is not None:
                await receiver_stop(layer, channel, listener)
            if channel is not None:
                with suppress(Exception):
                    await layer.group_discard(turn_group(self.session.id), channel)
            with suppress(Exception):
                await database_sync_to_async(turn_release)(
                    session_id=self.session.id, turn_id=self.turn_id
                )
            if any(self._usage.values()):
                self._emit(ev.USAGE, dict(self._usage))
            self._emit(ev.DONE, {"messageId": self._last_message_id, "finishReason": finish_reason})

    async def _fail(self, stop: TurnStopped) -> None:
        self._emit(
            ev.ERROR,
            {"code": stop.code, "message": stop.message, "retryable": stop.retryable, **stop.extra},
        )
        await aevent_record(
            type="error",
            action=AuditAction.UPSTREAM_FAILURE
            if stop.code.startswith(("upstream", "rate"))
            else AuditAction.TURN_ERROR,
            user=self.user,
            session_id=self.session.id,
            data={"code": stop.code, "message": stop.message, **stop.extra},
            ip=self.ip,
        )

    async def _loop(self) -> str:
        calls_made = 0
        previous_call, repeats = None, 0
        while True:
            parts, finish = await self._model_turn()
            calls = [part["functionCall"] for part in parts if "functionCall" in part]
            if not calls:
                return finish
            for index, call in enumerate(calls):
                calls_made += 1
                signature = (call.get("name"), json.dumps(call.get("args") or {}, sort_keys=True))
                repeats = repeats + 1 if signature == previous_call else 1
                previous_call = signature
                stop = None
                if calls_made > settings.AGENT_MAX_TOOL_CALLS:
                    stop = TurnStopped(
                        "tool_call_limit",
                        f"The turn reached its limit of {settings.AGENT_MAX_TOOL_CALLS} tool calls and was stopped.",
                    )
                elif repeats >= settings.AGENT_REPEATED_CALL_LIMIT:
                    stop = TurnStopped(
                        "loop_detected",
                        f"The model called {call.get('name')} with the same arguments {repeats} times in a row; the turn was stopped.",
                    )
                if stop is not None:
                    await self._answer_unrun(calls[index:], stop.message)
                    raise stop
                try:
                    await self._tool_call(call)
                except TurnInterrupted:
                    await self._answer_unrun(calls[index:], CANCELLED_TEXT)
                    raise
                except TurnStopped as stop:
                    await self._answer_unrun(calls[index:], stop.message)
                    raise
            await self._inject_binary()

    async def _open_conversation(self) -> None:
        """History (what this process has not seen yet) plus the user's message, in memory.

        The history is read before the message is stored, so it is not read back twice.
        """
        session = self.session
        steps = await database_sync_to_async(history_steps)(
            session_id=session.id, epoch=session.history_epoch
        )
        system_instruction = await asyncio.to_thread(_system_instruction, session)
        generation = {}
        if session.config.get("temperature") is not None:
            generation["temperature"] = session.config["temperature"]
        if thinking_supported(session.model_name):
            generation["thinkingConfig"] = {"includeThoughts": True}
        self.conversation = Conversation(
            steps,
            system_instruction=system_instruction,
            declarations=tool_declarations(session.model_name),
            generation_config=generation,
        )
        parts = [{"text": self.text}]
        self.conversation.append(MessageRole.USER, parts)
        message = await database_sync_to_async(self._store)(role=MessageRole.USER, parts=parts)
        if message is not None:
            self._last_message_id = str(message.id)

    async def _model_turn(self) -> tuple[list[dict], str]:
        """Streams one model answer; stores it when the stream ends or is cut off."""
        collected: list[dict] = []
        state = {"usage": None, "finish": "STOP"}
        failure = None
        try:
            await self._interruptible(self._stream(collected, state))
        except TurnInterrupted:
            state["finish"] = "CANCELLED"
            failure = TurnInterrupted()
        except Exception as exc:
            state["finish"] = "ERROR"
            failure = upstream_failure(exc)
        parts = parts_merge(collected)
        if parts:
            self.conversation.append(MessageRole.MODEL, parts)
            usage = state["usage"] or {}
            for key in self._usage:
                self._usage[key] += usage.get(key, 0)
            message = await database_sync_to_async(self._store)(
                role=MessageRole.MODEL,
                parts=parts,
                usage=usage or None,
                finish_reason=state["finish"],
            )
            if message is not None:
                self._last_message_id = str(message.id)
        if failure is not None:
            pending = [part["functionCall"] for part in parts if "functionCall" in part]
            interrupted = isinstance(failure, TurnInterrupted)
            await self._answer_unrun(pending, CANCELLED_TEXT if interrupted else CUT_OFF_TEXT)
            raise failure
        return parts, state["finish"]

    async def _stream(self, collected: list[dict], state: dict) -> None:
        idle = settings.GEMINI_STREAM_IDLE_SECONDS
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(idle) as deadline:
            stream = generate_stream(self.session.model_name, self.conversation.body())
            try:
                async for chunk in stream:
                    deadline.reschedule(loop.time() + idle)
                    self._chunk(chunk, collected, state)
            finally:
                # Closing the stream closes the upstream connection: Google stops generating.
                with suppress(Exception):
                    await stream.aclose()

    def _chunk(self, chunk, collected: list[dict], state: dict) -> None:
        if chunk.usage_metadata is not None:
            state["usage"] = _usage(chunk.usage_metadata)
        candidate = chunk.candidates[0] if chunk.candidates else None
        if candidate is None:
            return
        if candidate.finish_reason is not None:
            state["finish"] = getattr(
                candidate.finish_reason, "value", str(candidate.finish_reason)
            )
        content = candidate.content
        for part in content.parts if content and content.parts else []:
            data = part.model_dump(mode="json", exclude_none=True, by_alias=True)
            if part.function_call is not None:
                call = data["functionCall"]
                call.setdefault("id", ev.call_id_new(call.get("name", "tool")))
                call.setdefault("args", {})
                self._emit(
                    ev.TOOL_CALL,
                    {"callId": call["id"], "name": call.get("name"), "args": call["args"]},
                )
            elif part.text and part.thought:
                self._emit(ev.THOUGHT, _thought(part.text))
            elif part.text:
                self._emit(ev.CONTENT, {"text": part.text})
            collected.append(data)

    def _store(self, **kwargs):
        return message_store(session=self.session, user=self.user, ip=self.ip, **kwargs)

    async def _tool_call(self, call: dict) -> None:
        call_id, name, args = call["id"], call.get("name", ""), call.get("args") or {}
        started = time.monotonic()
        confirmation = {"outcome": "auto"}
        prepared = await tool_prepare(name, args, self.context, call_id)
        tool, args = prepared.tool, prepared.args
        if tool is not None and prepared.valid:
            session = await database_sync_to_async(Session.objects.get)(pk=self.session.id)
            if _needs_confirmation(
                tool.kind, session.approval_mode, session.always_allowed_tools, tool.name
            ):
                details = await asyncio.to_thread(tool.confirmation_details, args, self.context)
                self._emit(
                    ev.TOOL_CONFIRMATION,
                    {"callId": call_id, "name": name, "args": args, "details": details},
                )
                answer = await self._interruptible(self._confirmation(call_id))
                confirmation = {
                    "outcome": answer["outcome"],
                    "userId": answer.get("userId"),
                    "userEmail": answer.get("userEmail"),
                }
                if answer["outcome"] == "proceed_always":
                    await database_sync_to_async(tool_always_allow)(
                        session=self.session, tool_name=tool.name
                    )
        if confirmation["outcome"] != "cancel":
            try:
                await tool_call_begin(
                    session=self.session,
                    user=self.user,
                    call_id=call_id,
                    name=name,
                    args=args,
                    source="agent",
                    ip=self.ip,
                )
            except Exception as exc:
                logger.exception("The audit could not record a tool call; it does not run")
                raise TurnStopped(
                    "internal", "The tool call could not be recorded, so it did not run"
                ) from exc
        if confirmation["outcome"] == "cancel":
            result = ToolResult(output="", error=DENIED_TEXT, display="Cancelled by the user")
            status = "cancelled"
        else:
            result = (await self._interruptible(prepared.run())).result
            status = "success" if result.ok else "error"
        duration = int((time.monotonic() - started) * 1000)
        text = result.output if result.ok else (result.error or "")
        self._emit(
            ev.TOOL_RESULT,
            {
                "callId": call_id,
                "name": name,
                "status": status,
                "result": text,
                "durationMs": duration,
            },
        )
        if result.ok and "todos" in result.data:
            self._emit(ev.TODOS, {"todos": result.data["todos"]})
        parts, injected = function_response_parts(
            call_id=call_id, name=name, result=result, model=self.session.model_name
        )
        self._injections.extend(injected)
        self.conversation.append(MessageRole.TOOL, parts)
        message = await database_sync_to_async(self._store)(role=MessageRole.TOOL, parts=parts)
        if message is not None:
            self._last_message_id = str(message.id)
        await tool_call_record(
            session=self.session,
            user=self.user,
            call_id=call_id,
            name=name,
            args=args,
            status=status,
            duration_ms=duration,
            text=text,
            confirmation=confirmation,
            source="agent",
            ip=self.ip,
        )

    async def _inject_binary(self) -> None:
        """Audio or video a read tool returned: after a synthetic model turn, in a user turn of
        its own, as gemini-cli sends what function responses cannot carry."""
        if not self._injections:
            return
        parts, self._injections = self._injections, []
        acknowledgement = [
            {
                "text": BINARY_RECEIVED_TEXT,
                "thought": True,
                "thoughtSignature": SYNTHETIC_THOUGHT_SIGNATURE,
            }
        ]
        for role, content in ((MessageRole.MODEL, acknowledgement), (MessageRole.USER, parts)):
            self.conversation.append(role, content)
            await database_sync_to_async(self._store)(role=role, parts=content)

    async def _answer_unrun(self, calls: list[dict], reason: str) -> None:
        """Stores an error response for calls that will not run, so no call is left dangling."""
        if not calls:
            return
        parts = [
            {
                "functionResponse": {
                    "id": call.get("id"),
                    "name": call.get("name", ""),
                    "response": {"error": reason},
                }
            }
            for call in calls
        ]
        for call in calls:
            self._emit(
                ev.TOOL_RESULT,
                {
                    "callId": call.get("id"),
                    "name": call.get("name"),
                    "status": "cancelled",
                    "result": reason,
                    "durationMs": 0,
                },
            )
        if self.conversation is not None:
            self.conversation.append(MessageRole.TOOL, parts)
        await asyncio.shield(
            database_sync_to_async(self._store)(role=MessageRole.TOOL, parts=parts)
        )

    def _confirmation_future(self, call_id: str) -> asyncio.Future:
        if call_id not in self._confirmations:
            self._confirmations[call_id] = asyncio.get_running_loop().create_future()
        return self._confirmations[call_id]

    async def _confirmation(self, call_id: str) -> dict:
        try:
            async with asyncio.timeout(CONFIRMATION_TIMEOUT_SECONDS):
                return await self._confirmation_future(call_id)
        except TimeoutError:
            return {"outcome": "cancel", "userId": None, "reason": "timeout"}

    def _decide(self, message: dict) -> None:
        """A cancel or a confirmation, however it arrived (channel layer or database)."""
        if message.get("type") == "turn.cancel":
            if message.get("reason") == "no_listeners" and not self.cancel_when_unwatched:
                return
            self.cancel()
        elif message.get("type") == "turn.confirm":
            future = self._confirmation_future(message.get("callId", ""))
            if not future.done():
                future.set_result(message)

    async def _listen(self, layer, channel: str) -> None:
        while True:
            try:
                message = await layer.receive(channel)
            except Exception:
                # Redis went away; the database watch carries the decisions meanwhile.
                logger.warning("The turn in session %s lost its channel layer", self.session.id)
                return
            if message.get("type") == RECEIVER_STOP:
                return
            self._decide(message)

    async def _watch(self) -> None:
        """Decisions stored in the database, read every couple of seconds; and the heartbeat."""
        seen, since_beat = 0, 0.0
        while True:
            await asyncio.sleep(DECISION_POLL_SECONDS)
            since_beat += DECISION_POLL_SECONDS
            with suppress(Exception):
                for decision in await database_sync_to_async(turn_decisions_since)(
                    turn_id=self.turn_id, after=seen
                ):
                    seen = decision.pk
                    self._decide(decision.as_message())
            if since_beat >= HEARTBEAT_SECONDS:
                since_beat = 0.0
                with suppress(Exception):
                    await database_sync_to_async(turn_heartbeat)(
                        session_id=self.session.id, turn_id=self.turn_id
                    )


def _task_cancelling() -> bool:
    """Whether the task running this code is itself being cancelled (not just a step of it)."""
    task = asyncio.current_task()
    return bool(task and task.cancelling())


def turn_open(
    *, session: Session, user, text: str, ip=None, cancel_when_unwatched: bool = True
) -> Turn:
    """Claims the session; the returned turn starts when read and stores the message itself."""
    turn_id, text = turn_begin(session=session, user=user, text=text)
    return Turn(
        session=session,
        user=user,
        turn_id=turn_id,
        text=text,
        ip=ip,
        cancel_when_unwatched=cancel_when_unwatched,
    )
