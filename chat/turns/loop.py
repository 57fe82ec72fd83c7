"""One agent turn, as gemini-cli runs it: stream the model, run its tool calls, repeat until it answers.

A turn runs in its own task and publishes typed events; transports only read them. Every event is
also a numbered frame in the turn's frame log, which any process can replay and follow.
Confirmations and cancels reach it through the channel layer, so they can come from any process.
The process holds every running turn (gemini_server.lifecycle), so a background turn outlives its
client, and a drain for a restart stops the turns that did not finish in time, keeping their work.
"""

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from functools import partial

import aiohttp
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from google.genai import errors as genai_errors

from chat.agent import events as ev
from chat.agent.client import (
    GeminiNotConfigured,
    chunk_finish,
    chunk_parts,
    chunk_usage,
    generate_stream,
    thinking_supported,
)
from chat.agent.events import AgentEvent
from chat.agent.history import INTERRUPTED, SYNTHETIC_THOUGHT_SIGNATURE, parts_merge
from chat.agent.prompt import (
    JIT_TOOLS,
    environment_context,
    jit_context_append,
    jit_memory,
    system_prompt,
    workspace_memory,
)
from chat.agent.retry import AnswerProblem, AnswerRetries, answer_problem
from chat.agent.tools import (
    ToolContext,
    ToolResult,
    function_response_parts,
    tool_declarations_wire,
    tool_prepare,
)
from chat.models import FINISH_INTERRUPTED, MessageRole
from chat.tools_run import tool_call_begin, tool_call_record
from chat.turns import approval
from chat.turns.compression import (
    compression_due,
    context_window,
    snapshot_store,
    snapshot_write,
    split_point,
    tokens_estimate,
)
from chat.turns.control import tool_always_allow, turn_begin
from chat.turns.conversation import (
    Conversation,
    history_load,
    history_remember,
    snapshot_remember,
)
from chat.turns.frames import FrameLog
from chat.turns.loop_detection import LoopDetector, LoopHit, loop_feedback
from chat.turns.slot import turn_decisions_since, turn_end_store, turn_heartbeat, turn_release
from chat.turns.store import StepWrite, message_draft_save, steps_store
from gemini_server import metrics
from gemini_server.db import db_async, serving_loop
from gemini_server.groups import turn_group
from gemini_server.layer import STOP as RECEIVER_STOP
from gemini_server.layer import receiver_stop
from gemini_server.lifecycle import turn_register, turn_unregister
from gemini_server.scrub import secrets_scrub
from monitoring.models import AuditAction
from monitoring.services import aevent_record
from sessions_app.models import Session
from sessions_app.workspace import Workspace, session_workspace

logger = logging.getLogger(__name__)

CANCELLED_TEXT = "[Operation Cancelled] Reason: User cancelled the operation."
CUT_OFF_TEXT = "The model's answer was cut off before this call could run."
DENIED_TEXT = "[Operation Cancelled] Reason: User did not allow tool call"
LOOP_SKIPPED_TEXT = "The call was not run: the model was repeating itself (a loop was detected)."
THINKING_BUDGET_2_5 = 8192
HEARTBEAT_SECONDS = 30
BINARY_RECEIVED_TEXT = "Binary content received. Proceeding with analysis."
# How late a confirmation or cancel may arrive when its channel-layer message was lost (or was
# sent before the turn joined its group).
DECISION_POLL_SECONDS = 2
# A turn streamed over HTTP joins its channel-layer group this long after it started: a trivial
# turn is over before.
SUBSCRIBE_DELAY = 0.05
CONFIRMATION_TIMEOUT_SECONDS = 600
# A streaming answer is stored at most this often (and at least, while text keeps coming).
DRAFT_SECONDS = 1.0
# The user's message is stored this long after the model was asked, or with the answer when that
# ends the turn sooner (one transaction), or as soon as anything else of the turn is stored.
USER_STORE_DELAY = 0.05
RESTARTING_TEXT = (
    "The server is restarting, so this turn was stopped; what it produced is kept. "
    "Send the message again to continue."
)


class TurnInterrupted(Exception):
    """The turn was cancelled by a user, because its last listener left, or for a restart."""


class _Draft:
    """The streaming answer's draft row: written at most once a second, never for a short answer.

    The first write comes DRAFT_SECONDS after the model call began, so an answer that ends
    sooner is written once, whole. After that, new text is written within DRAFT_SECONDS of its
    arrival, by a timer, whether or not more text follows.
    """

    def __init__(self, turn: "Turn", collected: list[dict]):
        self.turn, self.collected = turn, collected
        self.loop = asyncio.get_running_loop()
        self.due = self.loop.time() + DRAFT_SECONDS
        self.id: int | None = None
        self.dirty = False
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.writing: asyncio.Task | None = None

    def changed(self) -> None:
        self.dirty = True
        self._arm()

    def _arm(self) -> None:
        busy = self.writing is not None and not self.writing.done()
        if self.closed or self.timer is not None or busy or not self.dirty:
            return
        self.timer = self.loop.call_at(self.due, self._fire)

    def _fire(self) -> None:
        self.timer = None
        if self.closed or not self.dirty:
            return
        self.dirty = False
        self.due = self.loop.time() + DRAFT_SECONDS
        self.writing = self.loop.create_task(self._write(parts_merge(self.collected)))

    async def _write(self, parts: list[dict]) -> None:
        try:
            await self.turn._user_message_stored()
            self.id = await db_async(message_draft_save)(
                session_id=self.turn.session.id, draft_id=self.id, parts=parts
            )
        except Exception:
            logger.warning("Could not store the streaming answer so far", exc_info=True)
        self.writing = None
        self._arm()

    async def close(self) -> int | None:
        """No more writes; the draft's id, once a write under way has landed."""
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.writing is not None:
            with suppress(Exception):
                await asyncio.shield(self.writing)
        return self.id


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


def _conversation_inputs(session: Session):
    """The history this process has not seen yet (and the compression snapshot), the system
    instruction and the environment context: read in the thread that claimed the session
    (`turn_open`), so the turn starts without another trip to a thread."""
    steps, snapshot, built = history_load(
        session_id=session.id, epoch=session.history_epoch, count=session.message_count
    )
    return steps, snapshot, built, *_prompt_and_environment(session)


def _prompt_and_environment(session: Session) -> tuple[str, str]:
    """The system instruction and the environment context, read from the workspace."""
    # Through the workspace module: GEMINI.md may be a link a shell command swaps at will.
    workspace = Workspace(session_workspace(session))
    instruction = system_prompt(
        session_instruction=session.config.get("systemInstruction") or "",
        approval_mode=session.approval_mode,
        memory=workspace_memory(workspace),
    )
    return instruction, environment_context(workspace)


def _generation_config(session: Session) -> dict:
    """gemini-cli's defaults (temperature 1, topP 0.95, topK 64, a thinking budget of 8192 on
    2.5 models); the session's temperature wins."""
    temperature = session.config.get("temperature")
    generation = {
        "temperature": 1 if temperature is None else temperature,
        "topP": 0.95,
        "topK": 64,
    }
    model = session.model_name
    if thinking_supported(model):
        generation["thinkingConfig"] = {"includeThoughts": True}
        if model.startswith("gemini-2.5"):
            generation["thinkingConfig"]["thinkingBudget"] = THINKING_BUDGET_2_5
    return generation


class Turn:
    """A running turn: start it, read its events, confirm or cancel it, wait for it."""

    def __init__(
        self,
        *,
        session: Session,
        user,
        turn_id,
        text: str,
        inputs,
        ip=None,
        cancel_when_unwatched: bool = True,
        background: bool = False,
    ):
        self.session = session
        # What its conversation is built from (`_conversation_inputs`), read in the thread that
        # claimed the session; or what reading it raised, raised again when the turn starts.
        self._inputs = inputs
        # A turn started over WebSocket stops when its last socket leaves; one streamed over
        # SSE belongs to that HTTP client, and only its disconnect (or a cancel) stops it.
        self.cancel_when_unwatched = cancel_when_unwatched
        # A background turn goes on when its client goes away (`detach`); others are cancelled.
        self.background = background
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
        # The loop it was told to start on by `turn_open` (`start_soon`), and whether a client
        # has begun reading its events (`next_event`, `events`).
        self._home: asyncio.AbstractEventLoop | None = None
        self._read = False
        self._current: asyncio.Task | None = None
        self._cancelled = False
        self._confirmations: dict[str, asyncio.Future] = {}
        self._usage = {"promptTokens": 0, "completionTokens": 0, "totalTokens": 0}
        self._last_message_id = ""
        # The user's message, and its storing while the model is asked (_open_conversation).
        self._user_parts: list[dict] | None = None
        self._user_stored: asyncio.Future | None = None
        # The session was freed with the turn's last write (`_store_final`).
        self._released = False
        # The last answer's prompt size (usageMetadata), for compression; 0 when unknown.
        self._prompt_tokens = 0
        self._detector = LoopDetector()
        # Subdirectory GEMINI.md files already given to the model in this turn.
        self._jit_loaded: set[str] = set()
        self._frames: FrameLog | None = None
        self._detached = False
        self._restarting = False
        self._draft: _Draft | None = None
        # Joining the turn's channel-layer group (`_join`), once started.
        self._subscription: asyncio.Task | None = None

    # Control, from transports.

    def abandon(self) -> None:
        """The client left before reading anything: cancel the turn (release it if it never
        started), or let a background turn go on without its client.

        Called from a thread when the HTTP response is closed.
        """
        if self._home is not None:
            # Started on that loop (`start_soon`): settled there, after the start.
            self._home.call_soon_threadsafe(self._abandon_started)
            return
        if self._task is not None:
            return  # the stream's own cleanup cancels it, or lets a background turn go on
        if self.background:
            # It outlives its client: it runs now, with nobody reading but its frame log.
            async_to_sync(self._start_detached)()
        else:
            turn_release(session_id=self.session.id, turn_id=self.turn_id)

    def _abandon_started(self) -> None:
        if self._read:
            return  # the stream's own cleanup cancels it, or lets a background turn go on
        if self.background:
            self.detach()
        else:
            self.cancel()

    async def _start_detached(self) -> None:
        self.start()
        self.detach()

    def drop(self) -> None:
        """A turn that was never started and will not be (`turn_open(start=False)`): its claim is
        released, and nothing of it is stored."""
        turn_release(session_id=self.session.id, turn_id=self.turn_id)

    def start_served(self) -> None:
        """Starts the turn on the loop the calling thread serves (`db_call`), if it serves one:
        the model is asked while the caller finishes its response. Otherwise it starts when read."""
        loop = serving_loop()
        if loop is not None:
            self.start_soon(loop)

    def start_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """Starts the turn on `loop` (running in another thread) as soon as that loop is free:
        the model is asked while the caller's thread is still answering its client."""
        self._home = loop
        loop.call_soon_threadsafe(self.start)

    def start(self) -> None:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._frames = FrameLog(self.turn_id)
            self._task = asyncio.create_task(self._run(), name=f"turn-{self.session.id}")
            turn_register(self)

    async def events(self) -> AsyncIterator[AgentEvent]:
        """Every event of the turn, ending with `done`."""
        self._read = True
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

    def detach(self) -> None:
        """Its client went away and it runs on (background): events go to the frame log only."""
        self._detached = True
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()

    def restart_stop(self) -> None:
        """The process is restarting: stop as a cancel does, and tell clients to send it again."""
        self._restarting = True
        self.cancel()

    async def wait(self) -> None:
        """Until the turn has stored everything, released the session and logged its frames."""
        if self._task is not None:
            await asyncio.shield(self._task)

    # The loop.

    async def next_event(self, timeout: float) -> AgentEvent | None:
        """The next event, or None when `timeout` passes first (time for a keep-alive)."""
        self._read = True
        self.start()
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None

    def _emit(self, type_: str, data: dict) -> None:
        number = self._frames.append({"type": type_, "data": data})
        if not self._detached:
            self._queue.put_nowait(AgentEvent(type_, data, id=number))

    def _interrupted_text(self) -> str:
        """What an unrun call's response says when the turn is stopped."""
        return INTERRUPTED if self._restarting else CANCELLED_TEXT

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
        metrics.turn_started()
        layer = get_channel_layer()
        watch = asyncio.create_task(self._watch())
        # A turn streamed to its HTTP client joins its group once it has run SUBSCRIBE_DELAY,
        # off the path to the first token; one that ends sooner never joins. That is safe because
        # all its group carries for it (confirmations, cancels) is also stored, and read from the
        # database within DECISION_POLL_SECONDS. A socket's turn joins at once: its group also
        # carries the cancel of the session's last socket leaving, which is not stored.
        delay = 0 if self.cancel_when_unwatched else SUBSCRIBE_DELAY
        joining = asyncio.get_running_loop().call_later(delay, self._join, layer)
        try:
            await self._open_conversation()
            finish_reason = await self._loop()
        except TurnInterrupted:
            finish_reason = "CANCELLED"
            if self._restarting:
                finish_reason = FINISH_INTERRUPTED
                await self._fail(TurnStopped("server_restarting", RESTARTING_TEXT, retryable=True))
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
            watch.cancel()
            joining.cancel()
            channel, listener = None, None
            with suppress(Exception):
                if self._subscription is not None:
                    channel, listener = await asyncio.shield(self._subscription)
            if listener is not None:
                await receiver_stop(layer, channel, listener)
            if channel is not None:
                with suppress(Exception):
                    await layer.group_discard(turn_group(self.session.id), channel)
            with suppress(Exception):
                # The user's message is stored before the session is free for another turn.
                await self._user_message_stored()
            if not self._released:
                with suppress(Exception):
                    await db_async(turn_release)(session_id=self.session.id, turn_id=self.turn_id)
            metrics.turn_finished(finish_reason=finish_reason, usage=self._usage)
            if any(self._usage.values()):
                self._emit(ev.USAGE, dict(self._usage))
            self._emit(ev.DONE, {"messageId": self._last_message_id, "finishReason": finish_reason})
            try:
                # `done` reaches the shared log before the turn counts as finished (a drain waits).
                with suppress(Exception):
                    await self._frames.flushed()
            finally:
                turn_unregister(self)

    async def _fail(self, stop: TurnStopped) -> None:
        with suppress(Exception):
            # The audit trail keeps the order of what happened: the message, then its failure.
            await self._user_message_stored()
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
        turns = 0
        while True:
            turns += 1
            if turns > settings.AGENT_MAX_TURNS:
                raise TurnStopped(
                    "turn_limit",
                    f"The turn reached its limit of {settings.AGENT_MAX_TURNS} model turns "
                    "and was stopped.",
                )
            await self._compress_if_due()
            parts, finish, hit = await self._model_answer()
            calls = [part["functionCall"] for part in parts if "functionCall" in part]
            hit = hit or self._calls_loop(calls)
            if hit is not None:
                await self._loop_found(hit, calls)
                continue
            if not calls:
                return finish
            for index, call in enumerate(calls):
                try:
                    outcome = await self._tool_call(call)
                except TurnInterrupted:
                    await self._answer_unrun(calls[index:], self._interrupted_text())
                    raise
                except TurnStopped as stop:
                    await self._answer_unrun(calls[index:], stop.message)
                    raise
                if outcome == "cancel":
                    # As gemini-cli: a denied call cancels the rest of the batch and the turn.
                    await self._answer_unrun(calls[index + 1 :], CANCELLED_TEXT)
                    return "CANCELLED"

            await self._inject_binary()

    def _calls_loop(self, calls: list[dict]) -> LoopHit | None:
        for call in calls:
            hit = self._detector.tool_call(call.get("name", ""), call.get("args") or {})
            if hit is not None:
                return hit
        return None

    async def _loop_found(self, hit: LoopHit, calls: list[dict]) -> None:
        """The first loop earns the model gemini-cli's nudge; the second stops the turn."""
        if hit.count > 1:
            stop = TurnStopped(
                "loop_detected",
                f"The model kept repeating itself after being told, so the turn was stopped. "
                f"{hit.detail}",
                extra={"loopType": hit.kind},
            )
            await self._answer_unrun(calls, stop.message)
            raise stop
        await self._answer_unrun(calls, LOOP_SKIPPED_TEXT)
        self.conversation.append(
            MessageRole.USER, [{"text": loop_feedback(hit.detail)}], stored=False
        )
        self._detector.after_nudge()

    async def _compress_if_due(self) -> None:
        """Compresses the conversation at the threshold; refuses a request the window cannot take."""
        model = self.session.model_name
        body = self.conversation.body()
        if compression_due(prompt_tokens=self._prompt_tokens, body=body, model=model):
            split = split_point(self.conversation.contents)
            snapshot = ""
            if split > 0:
                try:
                    snapshot = await self._interruptible(
                        snapshot_write(model, self.conversation.compressible(split))
                    )
                except TurnInterrupted:
                    raise
                except Exception:
                    logger.warning(
                        "Compression failed in session %s", self.session.id, exc_info=True
                    )
            if snapshot:
                self.conversation.compress(split, snapshot)
                self._prompt_tokens = 0
                await self._user_message_stored()
                stored = await db_async(snapshot_store)(
                    session_id=self.session.id,
                    epoch=self.session.history_epoch,
                    messages_covered=self.conversation.covered,
                    text=snapshot,
                )
                snapshot_remember(
                    session_id=self.session.id, epoch=self.session.history_epoch, snapshot=stored
                )
                body = self.conversation.body()
        window = context_window(model)
        if tokens_estimate(body) > window:
            raise TurnStopped(
                "context_window_exceeded",
                f"Sending this message ({tokens_estimate(body)} tokens) might exceed the "
                f"context window limit ({window} tokens).",
            )

    async def _model_answer(self) -> tuple[list[dict], str, LoopHit | None]:
        """One model answer, retried as gemini-cli does: an empty, thought-only or malformed one
        is asked again with a nudge; a 429 after Google's retryDelay, within a budget."""
        retries = AnswerRetries()
        while True:
            self.conversation.system_note = retries.nudge
            try:
                parts, finish, problem, hit = await self._model_turn()
            except TurnStopped as stop:
                if stop.code != "rate_limited":
                    raise
                delay = retries.retry_rate_limited(stop.extra.get("retryAfter"))
                if delay is None:
                    raise
                logger.info("Rate limited in session %s; retrying in %.1fs", self.session.id, delay)
                await self._interruptible(asyncio.sleep(delay))
                continue
            finally:
                self.conversation.system_note = ""
            if problem is None:
                return parts, finish, hit
            delay = retries.retry_invalid(problem)
            if delay is None:
                raise TurnStopped(
                    "upstream_error",
                    f"The model gave no usable answer after {retries.invalid} attempts: "
                    f"{problem.message}",
                    retryable=True,
                )
            logger.info(
                "Invalid answer in session %s (%s); retrying", self.session.id, problem.kind
            )
            await self._interruptible(asyncio.sleep(delay))

    async def _open_conversation(self) -> None:
        """History (what this process has not seen yet) plus the user's message, in memory.

        The history, the prompt and the environment were read when the session was claimed
        (`turn_open`), before the message is stored, so it is not read back twice. The message
        is stored off the path to the first token (`_user_message_store_start`), with the answer
        when that ends the turn sooner: nothing of the turn is stored, and the session is not
        released, before it is.
        """
        session = self.session
        parts = [{"text": self.text}]
        # Stored whatever follows, even a failure to build the conversation (`_fail`).
        self._user_parts = parts
        if isinstance(self._inputs, BaseException):
            raise self._inputs
        steps, snapshot, built, system_instruction, environment = self._inputs
        self._inputs = None
        self.conversation = Conversation(
            steps,
            system_instruction=system_instruction,
            tools=tool_declarations_wire(session.model_name),
            generation_config=_generation_config(session),
            environment=environment,
            snapshot=snapshot.text if snapshot else "",
            covered=snapshot.messages_covered if snapshot else 0,
            built=built,
        )
        self.conversation.append(MessageRole.USER, parts)
        asyncio.get_running_loop().call_later(USER_STORE_DELAY, self._user_message_store_start)

    async def _store_now(self, steps: list[StepWrite], *, last: bool, end: bool = False):
        stored = await db_async(self._steps_write)(steps, end=end)
        if last and stored:
            # The id `done` names: the user's message, the answer, or the tools' responses.
            self._last_message_id = str(stored[-1].id)
        return stored

    async def _store_async(self, step: StepWrite, *, last: bool = False):
        """Stores a step of the turn, after the user's message (raises if that could not be)."""
        await self._user_message_stored()
        return await self._store_now([step], last=last)

    async def _store_final(self, step: StepWrite) -> None:
        """The answer that ends the turn, the user's message if it still waits, and the release
        of the session: one transaction."""
        if self._user_stored is None:
            steps = [StepWrite(role=MessageRole.USER, parts=self._user_parts), step]
            self._user_stored = asyncio.ensure_future(self._store_now(steps, last=True, end=True))
            await asyncio.shield(self._user_stored)
        else:
            await self._user_message_stored()
            await self._store_now([step], last=True, end=True)
        self._released = True

    def _user_message_store_start(self) -> None:
        """Stores the user's message, once: USER_STORE_DELAY after the model was asked (the
        storing thread would otherwise compete with the first chunk for the interpreter), or
        when anything else must be stored first."""
        if self._user_stored is None and self._user_parts is not None:
            step = StepWrite(role=MessageRole.USER, parts=self._user_parts)
            self._user_stored = asyncio.ensure_future(self._store_now([step], last=True))

    async def _user_message_stored(self) -> None:
        self._user_message_store_start()
        if self._user_stored is not None:
            await asyncio.shield(self._user_stored)

    async def _model_turn(
        self,
    ) -> tuple[list[dict], str, AnswerProblem | None, LoopHit | None]:
        """Streams one model answer, kept as a draft while it streams; stores it at the end.

        Returns the parts, the finish reason, why the answer cannot end the turn (an empty or
        malformed one, kept out of the conversation) and the loop its text fell into, if any.
        """
        collected: list[dict] = []
        state = {"usage": None, "finish": "STOP", "finished": False, "loop": None}
        after_tool = self._after_tool()
        failure = None
        self._draft = _Draft(self, collected)
        try:
            await self._interruptible(self._stream(collected, state))
        except TurnInterrupted:
            state["finish"] = FINISH_INTERRUPTED if self._restarting else "CANCELLED"
            failure = TurnInterrupted()
        except Exception as exc:
            state["finish"] = "ERROR"
            failure = upstream_failure(exc)
        draft_id = await asyncio.shield(self._draft.close())
        parts = parts_merge(collected)
        problem = None
        if failure is None and state["loop"] is None:
            problem = answer_problem(
                parts, state["finish"] if state["finished"] else None, after_tool=after_tool
            )
        if parts:
            # An answer to be asked again is stored, but not shown to the model.
            self.conversation.append(MessageRole.MODEL, [] if problem else parts)
            usage = state["usage"] or {}
            self._prompt_tokens = usage.get("promptTokens", self._prompt_tokens)
            for key in self._usage:
                self._usage[key] += usage.get(key, 0)
            step = StepWrite(
                role=MessageRole.MODEL,
                parts=parts,
                usage=usage or None,
                finish_reason=state["finish"],
                draft_id=draft_id,
            )
            calls = any("functionCall" in part for part in parts)
            if failure is None and problem is None and state["loop"] is None and not calls:
                await self._store_final(step)  # the turn ends with it (`_loop`)
            else:
                await self._store_async(step, last=True)
        if failure is not None:
            pending = [part["functionCall"] for part in parts if "functionCall" in part]
            interrupted = isinstance(failure, TurnInterrupted)
            await self._answer_unrun(
                pending, self._interrupted_text() if interrupted else CUT_OFF_TEXT
            )
            raise failure
        return parts, state["finish"], problem, state["loop"]

    def _after_tool(self) -> bool:
        """Whether the model is answering tool responses (it may then end without a word)."""
        contents = self.conversation.contents
        return bool(contents) and any("functionResponse" in part for part in contents[-1]["parts"])

    def _content_loop(self, parts: list[dict], state: dict) -> bool:
        """Feeds streamed answer text to the loop detector; True when it found a loop."""
        for part in parts:
            if part.get("text") and not part.get("thought"):
                hit = self._detector.content(part["text"])
                if hit is not None:
                    state["loop"] = hit
                    state["finish"] = "LOOP_DETECTED"
                    return True
        return False

    async def _stream(self, collected: list[dict], state: dict) -> None:
        idle = settings.GEMINI_STREAM_IDLE_SECONDS
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(idle) as deadline:
            stream = generate_stream(self.session.model_name, self.conversation.body())
            try:
                async for chunk in stream:
                    deadline.reschedule(loop.time() + idle)
                    parts = self._chunk(chunk, collected, state)
                    if self._content_loop(parts, state):
                        break
            finally:
                # Closing the stream closes the upstream connection: Google stops generating.
                with suppress(Exception):
                    await stream.aclose()

    def _chunk(self, chunk: dict, collected: list[dict], state: dict) -> list[dict]:
        """Reads one streamed chunk into the answer and the turn's events; returns its parts."""
        usage = chunk_usage(chunk)
        if usage is not None:
            state["usage"] = usage
        finish = chunk_finish(chunk)
        if finish is not None:
            state["finished"] = True
            state["finish"] = finish
        parts = chunk_parts(chunk)
        for data in parts:
            text, call = data.get("text"), data.get("functionCall")
            if call is not None:
                call.setdefault("id", ev.call_id_new(call.get("name", "tool")))
                call.setdefault("args", {})
                self._emit(
                    ev.TOOL_CALL,
                    {"callId": call["id"], "name": call.get("name"), "args": call["args"]},
                )
            elif text and data.get("thought"):
                self._emit(ev.THOUGHT, _thought(text))
            elif text:
                self._emit(ev.CONTENT, {"text": text})
            collected.append(data)
            self._draft.changed()
        return parts

    def _steps_write(self, steps: list[StepWrite], *, end: bool) -> list | None:
        """Stores steps (with `end`, also frees the session) and remembers them for the next turn."""
        common = {"session": self.session, "user": self.user, "steps": steps, "ip": self.ip}
        store = partial(turn_end_store, turn_id=self.turn_id) if end else steps_store
        stored = store(**common)
        for message in stored or []:
            history_remember(
                session_id=self.session.id, epoch=self.session.history_epoch, message=message
            )
        return stored

    async def _tool_call(self, call: dict) -> str:
        """Runs one call (asking first when the approval mode says so); returns the outcome."""
        call_id, name, args = call["id"], call.get("name", ""), call.get("args") or {}
        started = time.monotonic()
        confirmation = {"outcome": "auto"}
        result: ToolResult
        refusal = None
        prepared = await tool_prepare(name, args, self.context, call_id)
        tool, args = prepared.tool, prepared.args
        if tool is not None and prepared.valid:
            session = await db_async(Session.objects.get)(pk=self.session.id)
            refusal = approval.plan_refusal(tool.kind, tool.name, session.approval_mode)
            if refusal is None and approval.needs_confirmation(
                tool.kind, session.approval_mode, session.always_allowed_tools, tool.name, args
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
                    for entry in approval.always_entries(tool.name, args):
                        await db_async(tool_always_allow)(session=self.session, tool_name=entry)
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
        elif refusal is not None:
            result = ToolResult(output="", error=refusal, display=refusal)
            status = "error"
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
        if result.ok and name in JIT_TOOLS:
            result = await self._with_jit_context(result, args)
        parts, injected = function_response_parts(
            call_id=call_id, name=name, result=result, model=self.session.model_name
        )
        self._injections.extend(injected)
        self.conversation.append(MessageRole.TOOL, parts)
        await self._store_async(StepWrite(role=MessageRole.TOOL, parts=parts), last=True)
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
        return confirmation["outcome"]

    async def _with_jit_context(self, result: ToolResult, args: dict) -> ToolResult:
        """GEMINI.md files of the subdirectories a tool touched, appended to its output once."""
        path = args.get("file_path") or args.get("dir_path")
        if not isinstance(path, str) or not path:
            return result
        context = await asyncio.to_thread(
            jit_memory, Workspace(self.context.workspace), path, self._jit_loaded
        )
        if not context:
            return result
        return dataclasses.replace(result, output=jit_context_append(result.output, context))

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
            await self._store_async(StepWrite(role=role, parts=content))

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
        await asyncio.shield(self._store_async(StepWrite(role=MessageRole.TOOL, parts=parts)))

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

    def _join(self, layer) -> None:
        self._subscription = asyncio.create_task(self._subscribe(layer))

    async def _subscribe(self, layer) -> tuple[str | None, asyncio.Task | None]:
        """Joins the turn's group; the channel and its reader, or Nones without the layer.

        The default prefix: channels_redis receives for one prefix at a time per process, so a
        channel of its own would stall every socket's channel while this one waits.
        """
        try:
            channel = await layer.new_channel()
            await layer.group_add(turn_group(self.session.id), channel)
        except Exception:
            # Without the channel layer (Redis away) decisions still come, from the database.
            logger.warning("Turn in session %s runs without the channel layer", self.session.id)
            return None, None
        return channel, asyncio.create_task(self._listen(layer, channel))

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
                for decision in await db_async(turn_decisions_since)(
                    turn_id=self.turn_id, after=seen
                ):
                    seen = decision.pk
                    self._decide(decision.as_message())
            if since_beat >= HEARTBEAT_SECONDS:
                since_beat = 0.0
                with suppress(Exception):
                    await db_async(turn_heartbeat)(session_id=self.session.id, turn_id=self.turn_id)


def _task_cancelling() -> bool:
    """Whether the task running this code is itself being cancelled (not just a step of it)."""
    task = asyncio.current_task()
    return bool(task and task.cancelling())


def turn_open(
    *,
    session_id,
    user,
    text: str,
    ip=None,
    cancel_when_unwatched: bool = True,
    background: bool = False,
    start: bool = True,
) -> Turn:
    """Claims the user's session (`turn_begin`) and reads what its conversation is built from,
    in the caller's thread; the returned turn stores the message itself.

    With `start`, the turn starts at once on the loop the caller's thread serves (`start_served`);
    without it, the caller starts it, or drops it (`drop`: its claim is released).
    """
    session, turn_id, text = turn_begin(session_id=session_id, user=user, text=text)
    try:
        inputs = _conversation_inputs(session)
    except Exception as exc:
        # The turn reports it as it starts (an `error` event), and frees the session.
        inputs = exc
    turn = Turn(
        session=session,
        user=user,
        turn_id=turn_id,
        text=text,
        inputs=inputs,
        ip=ip,
        cancel_when_unwatched=cancel_when_unwatched,
        background=background,
    )
    if start:
        turn.start_served()
    return turn
