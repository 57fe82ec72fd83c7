"""The agent loop's rules on their own: loop detection, command roots, the compression split,
what counts as an unusable answer, GEMINI.md imports."""

from chat.agent.prompt import folder_tree, memory_with_imports
from chat.agent.retry import answer_problem
from chat.agent.tools import ToolKind
from chat.turns.approval import always_entries, command_roots, needs_confirmation
from chat.turns.compression import split_point
from chat.turns.loop_detection import LoopDetector
from sessions_app.workspace import Workspace


def test_five_identical_calls_in_a_row_are_a_loop():
    detector = LoopDetector()
    hits = [detector.tool_call("read_file", {"file_path": "a"}) for _ in range(5)]

    assert hits[:4] == [None] * 4
    assert hits[4].count == 1 and hits[4].kind == "tool_call"
    assert hits[4].detail == 'Repeated tool call: read_file with arguments {"file_path":"a"}'


def test_a_repeated_cycle_of_calls_is_a_loop_but_varied_calls_are_not():
    cycle = LoopDetector()
    hits = [cycle.tool_call("ls", {"dir_path": str(i % 2)}) for i in range(10)]
    assert hits[-1] is not None and all(hit is None for hit in hits[:-1])

    varied = LoopDetector()
    assert all(varied.tool_call("read_file", {"file_path": str(i)}) is None for i in range(30))


def test_repeated_text_is_a_loop_but_code_blocks_and_lists_are_not():
    detector = LoopDetector()
    sentence = "The same sentence over and over, forever and ever. "
    hits = [detector.content(sentence) for _ in range(12)]
    assert any(hits) and hits[0] is None

    in_code = LoopDetector()
    assert in_code.content("```python\n") is None
    assert all(in_code.content(sentence) is None for _ in range(20))


def test_a_second_loop_after_the_nudge_counts_two():
    detector = LoopDetector()
    for _ in range(5):
        first = detector.tool_call("ls", {})
    detector.after_nudge()
    for _ in range(5):
        second = detector.tool_call("ls", {})

    assert first.count == 1 and second.count == 2


def test_command_roots():
    assert command_roots("git status && npm test | tee out.log") == ["git", "npm", "tee"]
    assert command_roots("FOO=1 /usr/bin/python -m pytest; ls -la") == ["python", "ls"]
    assert command_roots("echo $(rm -rf /)") is None
    assert command_roots("echo `id`") is None
    assert command_roots("echo 'unbalanced") is None
    assert always_entries("run_shell_command", {"command": "git log && git diff"}) == [
        "run_shell_command(git)",
        "run_shell_command(git)",
    ]


def test_shell_needs_every_root_allowed():
    always = ["run_shell_command(git)"]

    def asks(command):
        return needs_confirmation(
            ToolKind.EXECUTE, "default", always, "run_shell_command", {"command": command}
        )

    assert not asks("git status")
    assert asks("git status && curl example.com")
    assert asks("git $(whoami)")
    assert not needs_confirmation(
        ToolKind.EXECUTE, "yolo", [], "run_shell_command", {"command": "rm x"}
    )


def test_split_point_keeps_calls_with_their_responses():
    def user(text):
        return {"role": "user", "parts": [{"text": text}]}

    def model(text):
        return {"role": "model", "parts": [{"text": text}]}

    call = {"role": "model", "parts": [{"functionCall": {"name": "ls", "args": {}}}]}
    response = {"role": "user", "parts": [{"functionResponse": {"name": "ls", "response": {}}}]}
    contents = [user("a" * 100), call, response, model("b" * 100), user("c" * 100), model("d")]

    assert split_point(contents) == 4  # never at the tool response (index 2)
    assert split_point([user("x"), model("y")]) == 2  # ends with a plain answer: all of it
    assert split_point([user("x"), call]) == 0


def test_unusable_answers():
    assert answer_problem([], "STOP").kind == "NO_RESPONSE_TEXT"
    assert answer_problem([{"text": "t", "thought": True}], "STOP").kind == (
        "THINKING_ONLY_RESPONSE"
    )
    assert answer_problem([], "MALFORMED_FUNCTION_CALL").kind == "MALFORMED_FUNCTION_CALL"
    assert answer_problem([{"text": "hi"}], None).kind == "NO_FINISH_REASON"
    assert answer_problem([{"text": "hi"}], "STOP") is None
    assert answer_problem([{"functionCall": {"name": "ls"}}], None) is None
    # After a tool's response the model may stop without a word.
    assert answer_problem([], "STOP", after_tool=True) is None


def test_imports_are_bounded_and_stay_inside(tmp_path):
    (tmp_path / "GEMINI.md").write_text("top @a.md @missing.md")
    (tmp_path / "a.md").write_text("A then @b.md")
    (tmp_path / "b.md").write_text("B then @a.md")  # a cycle

    text = memory_with_imports(Workspace(tmp_path), "GEMINI.md", budget=10_000)

    assert text.count("A then") == 1 and text.count("B then") == 1
    assert "@missing.md" in text and "B then @a.md" in text


def test_folder_tree_is_bounded(tmp_path):
    for index in range(30):
        (tmp_path / f"f{index:02}.txt").write_text("x")
    (tmp_path / "sub").mkdir()

    tree = folder_tree(Workspace(tmp_path), max_items=10)

    lines = tree.splitlines()
    assert "/workspace/" in lines
    assert lines.index("/workspace/") + 1 < len(lines)
    assert "├───sub/" in lines
    assert lines[-1] == "└───..."
    assert sum(1 for line in lines if line.startswith(("├───", "└───"))) == 11
