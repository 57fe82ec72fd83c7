"""A reader of the channel layer is stopped by a message, not by cancelling its receive()."""

import asyncio

from channels.layers import get_channel_layer

from gemini_server.layer import STOP, receiver_stop


async def test_receiver_stop_ends_the_reader_without_cancelling_it():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    seen = []

    async def reader():
        while True:
            message = await layer.receive(channel)
            if message["type"] == STOP:
                return "stopped"
            seen.append(message["type"])

    task = asyncio.create_task(reader())
    await layer.send(channel, {"type": "work.item"})
    await receiver_stop(layer, channel, task)

    assert task.done() and not task.cancelled()
    assert task.result() == "stopped"
    assert seen == ["work.item"]


async def test_receiver_stop_cancels_a_reader_that_does_not_listen():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    task = asyncio.create_task(asyncio.sleep(60))

    await receiver_stop(layer, channel, task, timeout=0.2)

    assert task.cancelled()
