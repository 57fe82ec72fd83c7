"""The web chat client in a real browser: Debian's headless Chromium, driven by Playwright.

The page runs against a live server process (PostgreSQL and Redis shared with the test, the
project's fake Gemini upstream scripted through `[[fake:...]]` directives in the messages).

`WEB_CLIENT_SCREENSHOTS=docs/screenshots` makes the demo test write the README's screenshots there.
"""

import json
import mimetypes
import os
import shutil
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.conftest import PASSWORD, make_user

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# The real server hashes with Django's default; the tests' fast MD5 hasher is not among its own.
SERVER_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]


def off_the_loop(function, *args):
    """Runs an ORM call in a thread: Playwright's sync API keeps an event loop on this one, and
    Django refuses database work on a thread with a running loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args).result()


def workspace_file(session_id: str, name: str) -> bytes:
    from django.db import connection

    from sessions_app.models import Session
    from sessions_app.workspace import session_workspace

    try:
        return (session_workspace(Session.objects.get(pk=session_id)) / name).read_bytes()
    finally:
        connection.close()


def fake(*steps) -> str:
    """A message that scripts the fake upstream's answer, one step per model call."""
    return f"[[fake:{json.dumps(list(steps))}]]"


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("needs Debian's chromium (apt-get install -y chromium)")
    return path


@pytest.fixture
def browser(chromium_path):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path,
            # Chromium's sandbox needs user namespaces, which root in CI and containers lack.
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        yield browser
        browser.close()


class Watched:
    """A page with what it did that nobody asked for: dialogs opened, uncaught errors."""

    def __init__(self, page: Page):
        self.page, self.dialogs, self.errors = page, [], []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def page(browser) -> Watched:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    context.set_default_timeout(20_000)
    watched = Watched(context.new_page())
    yield watched
    context.close()
    assert watched.errors == []


@pytest.fixture
def engineer(transactional_db, settings):
    settings.PASSWORD_HASHERS = SERVER_HASHERS
    return make_user("browser@example.com", name="Browser User")


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".whoami .user-email")).to_have_text(email)


def create_session(page: Page, title: str, mode: str = "default") -> None:
    page.get_by_role("button", name="New session").first.click()
    page.get_by_label("Title").fill(title)
    page.get_by_label("Approval mode").select_option(mode)
    page.locator("form.new-session").get_by_role("button", name="Create").click()
    expect(page.locator(".chat .session-title")).to_have_text(title)
    expect(page.locator(".chat-log .empty")).to_contain_text("No messages yet")


def send(page: Page, text: str) -> None:
    box = page.get_by_label("Message")
    expect(box).to_be_enabled()
    box.fill(text)
    box.press("Enter")


def last_turn(page: Page):
    return page.locator(".turn.assistant").last


def api_get(base: str, path: str, token: str):
    request = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def token_of(page: Page) -> str:
    """The JWT the page signed in with (the page keeps it in sessionStorage)."""
    stored = page.evaluate("() => sessionStorage.getItem('gemini-server.auth')")
    return json.loads(stored)["accessToken"]


def test_an_engineer_chats_approves_a_write_and_uploads_in_the_browser(
    live_servers, fake_gemini, engineer, page, settings
):
    base = live_servers()
    browser_page = page.page
    sign_in(browser_page, base, engineer.email)
    create_session(browser_page, "Browser session")
    chat = browser_page.locator(".chat")

    # 1. The answer shows as it streams: the model is still answering (it hangs) when it is read.
    send(
        browser_page,
        fake(
            {
                "thought": "**Planning** a reply",
                "text": ["Streaming ", "as it ", "comes"],
                "hang": True,
            }
        ),
    )
    answer = last_turn(browser_page).locator(".answer")
    expect(answer).to_have_text("Streaming as it comes")
    expect(chat).to_have_attribute("data-running", "true")
    expect(last_turn(browser_page).locator(".thought summary")).to_contain_text("Planning")
    # ... and Cancel stops the turn; what came is kept.
    browser_page.get_by_role("button", name="Cancel").click()
    expect(last_turn(browser_page).locator(".finish")).to_have_text("Cancelled")
    expect(chat).to_have_attribute("data-running", "false")
    expect(answer).to_have_text("Streaming as it comes")

    # 2. A write_file call waits for approval; approved, the file shows up in the file browser.
    content = "print('written by the agent')\n"
    send(
        browser_page,
        fake(
            {
                "text": "I will write **hello.py** now.",
                "calls": [
                    {"name": "write_file", "args": {"file_path": "hello.py", "content": content}}
                ],
            },
            {"text": "Done: `hello.py` prints a line."},
        ),
    )
    turn = last_turn(browser_page)
    tool = turn.locator(".tool[data-name='write_file']")
    expect(tool).to_have_attribute("data-status", "waiting")
    expect(turn.locator(".answer").first).to_have_text("I will write hello.py now.")
    expect(turn.locator(".answer strong")).to_have_text("hello.py")
    expect(tool.locator(".confirm-path")).to_contain_text("/workspace/hello.py")
    expect(tool.locator(".diff .diff-add").last).to_have_text(f"+{content.strip()}")
    files = browser_page.locator(".files")
    expect(files.locator(".file-row")).to_have_count(0)

    tool.get_by_role("button", name="Allow once").click()
    expect(tool).to_have_attribute("data-status", "success")
    expect(turn.locator(".answer").last).to_have_text("Done: hello.py prints a line.")
    expect(turn).to_have_attribute("data-state", "done")
    row = files.locator(".file-row[data-name='hello.py']")
    expect(row).to_be_visible()
    row.locator(".file-name").click()
    expect(files.locator(".preview-text")).to_have_text(content)

    # Token usage: the turn's `usage` event, and the session's total from the API.
    expect(turn.locator(".usage")).to_contain_text("Tokens:")
    session_id = chat.get_attribute("data-session-id")
    usage = api_get(base, f"/api/v1/sessions/{session_id}", token_of(browser_page))["session"][
        "usage"
    ]
    assert usage["totalTokens"] > 0
    expect(browser_page.locator(".session-usage")).to_contain_text(
        f"{usage['totalTokens']:,} total"
    )

    # 3. An upload lands in the workspace, byte for byte.
    uploaded = b"# Notes\n\nfrom the browser \xe2\x9c\x93\n"
    browser_page.locator("input.file-input").set_input_files(
        files=[{"name": "notes.md", "mimeType": "text/markdown", "buffer": uploaded}]
    )
    expect(files.locator(".file-row[data-name='notes.md']")).to_be_visible()
    expect(files.locator(".files-status")).to_have_text("Uploaded notes.md")
    assert off_the_loop(workspace_file, session_id, "notes.md") == uploaded

    # 4. Markup in a model answer is text: no element, no script, no dialog.
    hostile = "<img src=x onerror=alert(1)>"
    send(
        browser_page,
        fake({"text": f"Here it is: {hostile} and [a link](javascript:alert(2)) **done**"}),
    )
    turn = last_turn(browser_page)
    expect(turn).to_have_attribute("data-state", "done")
    expect(turn.locator(".answer")).to_have_text(f"Here it is: {hostile} and a link done")
    expect(turn.locator(".answer strong")).to_have_text("done")
    assert browser_page.locator("img").count() == 0
    assert browser_page.locator("a[href^='javascript']").count() == 0
    assert page.dialogs == []

    # After a reload the page shows the same conversation from the history, still as text.
    browser_page.reload()
    expect(browser_page.locator(".turn.assistant")).to_have_count(3)
    expect(last_turn(browser_page).locator(".answer")).to_contain_text(hostile)
    expect(browser_page.locator(".tool[data-name='write_file']")).to_have_attribute(
        "data-status", "success"
    )
    assert browser_page.locator("img").count() == 0
    assert page.dialogs == []


def test_the_demo_flow_and_the_readme_screenshots(
    live_servers, fake_gemini, engineer, page, tmp_path
):
    """The offline demo as a person would try it (the fake's built-in `change X to Y in F`),
    photographed for the README: sign-in, a confirmation with its diff, the file browser."""
    shots = Path(os.environ.get("WEB_CLIENT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    base = live_servers()
    browser_page = page.page

    browser_page.goto(f"{base}/")
    browser_page.get_by_label("Email").fill(engineer.email)
    browser_page.screenshot(path=shots / "login.png")
    browser_page.get_by_label("Password").fill(PASSWORD)
    browser_page.get_by_role("button", name="Sign in").click()
    create_session(browser_page, "Greeting service")

    files = browser_page.locator(".files")
    browser_page.locator("input.file-input").set_input_files(
        files=[
            {
                "name": "greeting.py",
                "mimeType": "text/x-python",
                "buffer": b'def greet(name):\n    return f"hello {name}"\n',
            },
            {"name": "README.md", "mimeType": "text/markdown", "buffer": b"# Greeting service\n"},
        ]
    )
    expect(files.locator(".file-row")).to_have_count(2)

    send(browser_page, "change hello to goodbye in greeting.py")
    turn = last_turn(browser_page)
    tool = turn.locator(".tool[data-name='replace']")
    expect(tool).to_have_attribute("data-status", "waiting")
    expect(turn.locator(".tool[data-name='read_file']")).to_have_attribute("data-status", "success")
    expect(tool.locator(".diff .diff-del").last).to_contain_text("hello {name}")
    expect(tool.locator(".diff .diff-add").last).to_contain_text("goodbye {name}")
    browser_page.screenshot(path=shots / "chat-confirmation.png")

    tool.get_by_role("button", name="Allow once").click()
    expect(turn).to_have_attribute("data-state", "done")
    expect(turn.locator(".answer").last).to_have_text(
        'I changed "hello" to "goodbye" in greeting.py.'
    )
    files.locator(".file-row[data-name='greeting.py'] .file-name").click()
    expect(files.locator(".preview-text")).to_contain_text('return f"goodbye {name}"')

    # A download gets the file's bytes as the server has them.
    with browser_page.expect_download() as download:
        files.get_by_role("button", name="Download greeting.py").click()
    assert download.value.suggested_filename == "greeting.py"
    assert Path(download.value.path()).read_bytes() == (
        b'def greet(name):\n    return f"goodbye {name}"\n'
    )
    browser_page.mouse.move(0, 0)  # no hover highlight in the picture
    browser_page.screenshot(path=shots / "files.png")

    for name in ("login.png", "chat-confirmation.png", "files.png"):
        assert (shots / name).read_bytes().startswith(b"\x89PNG")


def test_the_markdown_renderer_builds_elements_and_keeps_markup_as_text(browser):
    """The renderer alone, on hostile and ordinary Markdown (no server: files served from disk)."""
    context = browser.new_context()
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    def from_disk(route):
        name = route.request.url.split("/static/", 1)[1]
        path = STATIC_DIR / name
        route.fulfill(
            status=200,
            body=path.read_bytes(),
            content_type=mimetypes.guess_type(path.name)[0] or "text/javascript",
        )

    page.route("http://client.test/static/**", from_disk)
    page.route(
        "http://client.test/",
        lambda route: route.fulfill(
            status=200, content_type="text/html", body="<!doctype html><body></body>"
        ),
    )
    page.goto("http://client.test/")
    cases = {
        "html": "<img src=x onerror=alert(1)> <script>alert(2)</script> <b>bold?</b>",
        "link": "[safe](https://example.com/a) [bad](javascript:alert(3)) [rel](../etc/passwd)",
        "image": "![pixel](https://tracker.example/p.png)",
        "bare": "see https://example.com/x_y_z.",
        "code": "```html\n<img src=x onerror=alert(4)>\n```",
        "unclosed": "```py\nprint('streaming')",
        "inline": "`<b>` **strong** *em* _em_ snake_case ~~gone~~",
        "lists": "- one\n- two\n  1. nested\n\n3. three",
        "heading": "## Title <i>x</i>",
        "table": "| a | b |\n|---|:-:|\n| `1` | <i>2</i> |",
        "quote": "> quoted **text**",
        "spans": "``a`b`` and `open [a [b] c](https://x.example/) [not a link",
    }
    rendered = page.evaluate(
        """async (cases) => {
            const {renderMarkdown} = await import("/static/web_client/markdown.js");
            const out = {};
            for (const [name, source] of Object.entries(cases)) {
                const box = document.createElement("div");
                box.append(renderMarkdown(source));
                document.body.append(box);
                out[name] = box.innerHTML;
            }
            return out;
        }""",
        cases,
    )
    context.close()

    assert rendered["html"] == (
        "<p>&lt;img src=x onerror=alert(1)&gt; &lt;script&gt;alert(2)&lt;/script&gt; "
        "&lt;b&gt;bold?&lt;/b&gt;</p>"
    )
    assert rendered["link"] == (
        '<p><a href="https://example.com/a" target="_blank" rel="noopener noreferrer nofollow">'
        "safe</a> bad rel</p>"
    )
    assert rendered["image"] == (
        '<p><a href="https://tracker.example/p.png" target="_blank" '
        'rel="noopener noreferrer nofollow">[image: pixel]</a></p>'
    )
    assert rendered["bare"] == (
        '<p>see <a href="https://example.com/x_y_z" target="_blank" '
        'rel="noopener noreferrer nofollow">https://example.com/x_y_z</a>.</p>'
    )
    assert rendered["code"] == (
        '<pre data-language="html"><code class="language-html">'
        "&lt;img src=x onerror=alert(4)&gt;</code></pre>"
    )
    assert rendered["unclosed"] == (
        '<pre data-language="py"><code class="language-py">print(\'streaming\')</code></pre>'
    )
    assert rendered["inline"] == (
        "<p><code>&lt;b&gt;</code> <strong>strong</strong> <em>em</em> <em>em</em> "
        "snake_case <del>gone</del></p>"
    )
    assert rendered["lists"] == (
        '<ul><li>one</li><li>two<ol><li>nested</li></ol></li></ul><ol start="3"><li>three</li></ol>'
    )
    assert rendered["heading"] == "<h2>Title &lt;i&gt;x&lt;/i&gt;</h2>"
    assert rendered["table"] == (
        '<div class="table-scroll"><table><thead><tr><th>a</th><th style="text-align: center;">b'
        '</th></tr></thead><tbody><tr><td><code>1</code></td><td style="text-align: center;">'
        "&lt;i&gt;2&lt;/i&gt;</td></tr></tbody></table></div>"
    )
    assert rendered["quote"] == "<blockquote><p>quoted <strong>text</strong></p></blockquote>"
    assert rendered["spans"] == (
        '<p><code>a`b</code> and `open <a href="https://x.example/" target="_blank" '
        'rel="noopener noreferrer nofollow">a [b] c</a> [not a link</p>'
    )
    assert dialogs == []
