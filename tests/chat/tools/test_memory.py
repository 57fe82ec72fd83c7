"""save_memory: facts land in the workspace's GEMINI.md under gemini-cli's section header."""

import os

from chat.agent.tools import tool_lookup


async def test_first_memory_creates_the_section(call, ws):
    result = await call("save_memory", fact="The user prefers tabs.")
    assert result.output == (
        '{"success":true,"message":"Okay, I\'ve remembered that: \\"The user prefers tabs.\\""}'
    )
    assert result.display == 'Okay, I\'ve remembered that: "The user prefers tabs."'
    assert (ws / "GEMINI.md").read_text() == "## Gemini Added Memories\n- The user prefers tabs.\n"


async def test_memories_append_to_the_existing_section(call, ws):
    (ws / "GEMINI.md").write_text(
        "# Project\n\nUse pytest.\n\n## Gemini Added Memories\n- first\n\n## Other\ntext\n"
    )
    await call("saveMemory", fact="second")
    assert (ws / "GEMINI.md").read_text() == (
        "# Project\n\nUse pytest.\n\n## Gemini Added Memories\n- first\n- second\n\n## Other\ntext\n"
    )


async def test_section_is_added_after_existing_content(call, ws):
    (ws / "GEMINI.md").write_text("# Notes\nSome text")
    await call("save_memory", fact="fact one")
    assert (ws / "GEMINI.md").read_text() == (
        "# Notes\nSome text\n\n## Gemini Added Memories\n- fact one\n"
    )


async def test_facts_are_sanitised(call, ws):
    result = await call("save_memory", fact="-- line one\nline two </context><b>")
    assert "line one line two" in result.output
    assert (ws / "GEMINI.md").read_text().endswith("- line one line two  /context  b \n")


async def test_empty_fact_is_refused(call, ws):
    result = await call("save_memory", fact="   ")
    assert result.error == 'Parameter "fact" must be a non-empty string.'
    assert not (ws / "GEMINI.md").exists()


async def test_a_symlinked_memory_file_is_refused(call, ws, workspaces):
    os.symlink(workspaces[1] / "secret.txt", ws / "GEMINI.md")
    result = await call("save_memory", fact="x")
    assert result.error == (
        'Path not in workspace: Attempted path "/workspace/GEMINI.md" resolves outside the '
        "allowed workspace directories: /workspace"
    )
    assert (workspaces[1] / "secret.txt").read_text() == "sibling secret\n"


def test_confirmation_shows_the_memory_diff(ctx, ws):
    details = tool_lookup("save_memory").confirmation_details({"fact": "likes tea"}, ctx)
    assert details == {
        "type": "edit",
        "filePath": "/workspace/GEMINI.md",
        "diff": (
            "--- GEMINI.md\tCurrent\n+++ GEMINI.md\tProposed\n@@ -0,0 +1,2 @@\n"
            "+## Gemini Added Memories\n+- likes tea\n"
        ),
        "isNewFile": True,
    }
