"""grep_search as gemini-cli's ripgrep variant (tools/ripGrep.ts, tools/grep-utils.ts): ripgrep
in the shell's sandbox where it is installed, the same output from Python where it is not."""

import shutil

import pytest

from chat.agent.tools import grep as grep_module


@pytest.fixture(params=["ripgrep", "python"])
def backend(request, settings, monkeypatch):
    if request.param == "ripgrep":
        if shutil.which("rg") is None:
            pytest.skip("ripgrep is not installed (.ci/run installs it)")
        settings.SHELL_SANDBOX = "bwrap" if shutil.which("bwrap") else "none"
    else:
        monkeypatch.setattr(grep_module, "ripgrep_usable", lambda: False)
    return request.param


@pytest.fixture
def project(ws):
    (ws / "a.py").write_text("def main():\n    pass\ndef helper():\n    return 1\n")
    (ws / "b.py").write_text("def other():\n    return 2\n\ndef more():\n  x\n")
    (ws / "notes.md").write_text("Define the API\n")
    (ws / "node_modules").mkdir()
    (ws / "node_modules" / "dep.py").write_text("def dep(): pass\n")
    (ws / "dist").mkdir()
    (ws / "dist" / "built.py").write_text("def built(): pass\n")
    (ws / ".hidden.py").write_text("def hidden(): pass\n")
    (ws / "blob.bin").write_bytes(b"def \x00\x01")
    return ws


async def test_matches_are_grouped_by_file(call, project, backend):
    result = await call("grep_search", pattern="^def ")
    assert result.output == (
        'Found 4 matches for pattern "^def " in path ".":\n---\n'
        "File: a.py\nL1: def main():\nL3: def helper():\n---\n"
        "File: b.py\nL1: def other():\nL4: def more():\n---"
    )
    assert result.display == "Found 4 matches"


async def test_matching_ignores_case_unless_asked(call, project, backend):
    loose = await call("grep_search", pattern="^DEFINE", include_pattern="*.md")
    assert loose.output == (
        'Found 1 match for pattern "^DEFINE" in path "." (filter: "*.md"):\n---\n'
        "File: notes.md\nL1: Define the API\n---"
    )
    strict = await call("grep_search", pattern="^DEFINE", case_sensitive=True)
    assert strict.output == 'No matches found for pattern "^DEFINE" in path ".".'


async def test_few_matches_bring_their_surroundings(call, project, backend):
    """grep-utils/ripGrep auto context: 50 lines around one match, 15 around two or three."""
    result = await call("grep_search", pattern="helper")
    assert result.output == (
        'Found 1 match for pattern "helper" in path ".":\n---\n'
        "File: a.py\nL1- def main():\nL2-     pass\nL3: def helper():\nL4-     return 1\n---"
    )


async def test_context_before_and_after(call, project, backend):
    after = await call("grep_search", pattern="other", after=1)
    assert after.output == (
        'Found 1 match for pattern "other" in path ".":\n---\n'
        "File: b.py\nL1: def other():\nL2-     return 2\n---"
    )
    before = await call("grep_search", pattern="more", before=1, dir_path="b.py")
    assert before.output == (
        'Found 1 match for pattern "more" in path "b.py":\n---\n'
        "File: b.py\nL3- \nL4: def more():\n---"
    )


async def test_fixed_strings_and_names_only(call, project, backend):
    fixed = await call("grep_search", pattern="main()", fixed_strings=True, names_only=True)
    assert fixed.output == 'Found 1 files with matches for pattern "main()" in path ".":\na.py'


async def test_many_matches_are_limited(call, ws, backend):
    (ws / "many.txt").write_text("hit\n" * 150)
    result = await call("grep_search", pattern="hit")
    assert result.output.startswith(
        'Found 100 matches for pattern "hit" in path "." (results limited to 100 matches for '
        "performance):\n---\nFile: many.txt\nL1: hit\n"
    )
    assert result.output.endswith("L100: hit\n---")
    assert result.display == "Found 100 matches (limited)"
    few = await call("grep_search", pattern="hit", total_max_matches=5, max_matches_per_file=10)
    assert few.output.endswith("L5: hit\n---")


async def test_long_lines_are_shortened(call, ws, backend):
    (ws / "min.js").write_text("x" * 2500 + "needle\n")
    (ws / "other.js").write_text("needle\nneedle\nneedle\nneedle\n")
    result = await call("grep_search", pattern="needle")
    assert "File: min.js\nL1: " + "x" * 2000 + "... [truncated]\n---" in result.output


async def test_ignore_files_and_no_ignore(call, project, backend):
    (project / ".geminiignore").write_text("b.py\n")
    result = await call("grep_search", pattern="^def ", names_only=True)
    assert result.output == 'Found 1 files with matches for pattern "^def " in path ".":\na.py'
    everything = await call("grep_search", pattern="^def ", names_only=True, no_ignore=True)
    assert everything.output.splitlines()[1:] == [
        "a.py",
        "b.py",
        "dist/built.py",
        "node_modules/dep.py",
    ]


async def test_gitignore_counts_in_a_git_repository(call, project, backend):
    (project / ".gitignore").write_text("a.py\n")
    outside_git = await call("grep_search", pattern="^def main", names_only=True)
    assert outside_git.output.endswith(":\na.py")
    (project / ".git").mkdir()
    inside_git = await call("grep_search", pattern="^def main", names_only=True)
    assert inside_git.output == 'No matches found for pattern "^def main" in path ".".'


async def test_bad_patterns_and_paths(call, project, backend):
    bad = await call("grep_search", pattern="([")
    assert bad.error == (
        "Invalid regular expression pattern provided: ([. Error: Invalid regular expression: "
        "/([/: Unterminated character class"
    )
    missing = await call("grep_search", pattern="x", dir_path="nope")
    assert missing.error == "Path does not exist: /workspace/nope"
    sub = await call("grep_search", pattern="x", dir_path="node_modules")
    assert sub.ok


async def test_exclude_pattern_drops_lines(call, project, backend):
    result = await call("grep_search", pattern="^def ", exclude_pattern="HELPER|more")
    assert result.output.startswith('Found 2 matches for pattern "^def " in path ".":')
    assert "helper" not in result.output and "more" not in result.output
