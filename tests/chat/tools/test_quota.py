"""The per-session workspace quota (WORKSPACE_MAX_BYTES) as the tools meet it."""

import re
import shutil

import pytest


def _shown(text: str) -> str:
    """A shell result without its last line naming the process group (a number that varies)."""
    return re.sub(r"\nProcess Group PGID: \d+(?=\n|$)", "", text or "")


@pytest.fixture
def quota(settings):
    settings.WORKSPACE_MAX_BYTES = 10_000
    return settings.WORKSPACE_MAX_BYTES


def _over(size: int, used: int, path: str) -> str:
    return (
        f"Workspace quota exceeded: writing /workspace/{path} ({size} bytes) would bring the "
        f"workspace to {used + size} bytes, over its limit of 10000 bytes. Delete files to "
        "free space."
    )


async def test_write_file_and_replace_are_refused_over_the_quota(call, ws, quota):
    (ws / "a.txt").write_text("head\n" + "a" * 5995)
    refused = await call("write_file", file_path="b.txt", content="b" * 6000)
    assert _shown(refused.error) == _over(6000, 6000, "b.txt")
    assert refused.display == "Workspace quota exceeded."
    assert not (ws / "b.txt").exists()
    grow = await call("replace", file_path="a.txt", old_string="head", new_string="c" * 5000)
    assert _shown(grow.error) == (
        "Workspace quota exceeded: writing /workspace/a.txt (10996 bytes) would bring the "
        "workspace to 10996 bytes, over its limit of 10000 bytes. Delete files to free space."
    )
    assert (ws / "a.txt").read_text() == "head\n" + "a" * 5995
    shrink = await call("replace", file_path="a.txt", old_string="head", new_string="h")
    assert shrink.ok


async def test_save_memory_is_refused_over_the_quota(call, ws, quota):
    (ws / "big.bin").write_bytes(b"x" * 9990)
    result = await call("save_memory", fact="The user likes tea.")
    assert _shown(result.error).startswith(
        "Failed to save memory. Detail: Workspace quota exceeded:"
    )
    assert not (ws / "GEMINI.md").exists()


async def test_a_shell_command_that_fills_the_workspace_is_told_and_writes_stop(
    call, ws, quota, settings
):
    if shutil.which("bwrap") is None:
        settings.SHELL_SANDBOX = "none"
    filled = await call("run_shell_command", command="head -c 20000 /dev/zero > big.bin; echo done")
    assert _shown(filled.error) == (
        "Output: done\nError: Workspace quota exceeded: the workspace uses 20000 bytes, over its "
        "limit of 10000 bytes. Its files are kept, but writes are refused until usage drops "
        "below the limit: delete files to free space."
    )
    assert filled.display == "Workspace quota exceeded."
    assert (ws / "big.bin").stat().st_size == 20000  # what the command wrote stays
    refused = await call("write_file", file_path="small.txt", content="x")
    assert _shown(refused.error).startswith(
        "Workspace quota exceeded: writing /workspace/small.txt"
    )
    still_over = await call("run_shell_command", command="echo still")
    assert _shown(still_over.error).startswith("Output: still\nError: Workspace quota exceeded")
    freed = await call("run_shell_command", command="rm big.bin && echo freed")
    assert freed.ok and _shown(freed.output) == "Output: freed"
    assert (await call("write_file", file_path="small.txt", content="x")).ok
