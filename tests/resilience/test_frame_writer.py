"""The frame log's writer: every turn's frames of a process in shared batches, on a real Redis."""

import pytest
import redis

from chat.turns import frames
from chat.turns.frames import FrameLog


@pytest.fixture
def frames_redis(private_redis):
    """A client of the test's own redis-server, whose command counts are the frame log's alone."""
    client = redis.Redis.from_url(private_redis.url)
    yield client
    client.close()


def _calls(client, command: str) -> int:
    return client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)


def _frame(text: str) -> dict:
    return {"type": "content", "data": {"text": text}}


async def test_frames_of_several_turns_are_written_together_with_one_expiry_each(frames_redis):
    logs = [FrameLog(f"turn-{index}") for index in range(3)]
    for log in logs:
        assert log.append(_frame("a")) == 1
        assert log.append(_frame("b")) == 2
    # Appended within one batch's time: one pipeline carries them all.
    assert len({id(log._written) for log in logs}) == 1

    for log in logs:
        await log.flushed()

    for log in logs:
        entries = frames_redis.xrange(log.key)
        assert [entry_id for entry_id, _ in entries] == [b"0-1", b"0-2"]
        assert frames_redis.ttl(log.key) > frames.FRAMES_TTL_DONE_SECONDS
        assert frames_redis.ttl(log.key) <= frames.FRAMES_TTL_RUNNING_SECONDS
    assert _calls(frames_redis, "xadd") == 6
    assert _calls(frames_redis, "expire") == 3


async def test_a_running_turns_expiry_is_not_set_again_with_every_batch(frames_redis):
    log = FrameLog("turn-long")
    for text in ("a", "b", "c"):
        log.append(_frame(text))
        await log.flushed()  # one batch each

    assert len(frames_redis.xrange(log.key)) == 3
    assert _calls(frames_redis, "expire") == 1


async def test_a_finished_turns_frames_are_kept_for_minutes(frames_redis):
    log = FrameLog("turn-done")
    log.append(_frame("a"))
    await log.flushed()
    log.append({"type": "done", "data": {"messageId": "", "finishReason": "STOP"}})
    await log.flushed()

    entries = frames_redis.xrange(log.key)
    assert [entry_id for entry_id, _ in entries] == [b"0-1", b"0-2"]
    assert 0 < frames_redis.ttl(log.key) <= frames.FRAMES_TTL_DONE_SECONDS
    assert _calls(frames_redis, "expire") == 2


async def test_frames_follow_replays_what_the_writer_stored(frames_redis):
    log = FrameLog("turn-replayed")
    log.append(_frame("a"))
    log.append({"type": "done", "data": {"messageId": "", "finishReason": "STOP"}})
    await log.flushed()

    replayed = [item async for item in frames.frames_follow("turn-replayed", after=0, idle=1)]

    assert [number for number, _ in replayed] == [1, 2]
    assert replayed[0][1] == _frame("a")
