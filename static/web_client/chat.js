// The chat pane of one session: its conversation (from history, then live turns), the composer,
// confirmations and cancel. One ChatView per session, kept while the page lives, so a turn that
// runs in one session keeps streaming while the user looks at another.

import {h, icon, formatTokens, replace} from "./dom.js";
import {renderMarkdown} from "./markdown.js";

const APPROVAL_MODES = [
  ["default", "Ask before edits and commands"],
  ["autoEdit", "Edit files without asking"],
  ["yolo", "Run everything without asking"],
  ["plan", "Read-only tools only"],
];
const EDIT_TOOLS = new Set(["write_file", "replace", "save_memory", "run_shell_command", "writeFile", "runShellCommand"]);
const RESULT_SHOWN_CHARS = 20000;

function toolSummary(args) {
  if (!args || typeof args !== "object") return "";
  const value =
    args.file_path ?? args.path ?? args.dir_path ?? args.command ?? args.pattern ?? args.query ??
    args.fact ?? args.prompt ?? (Array.isArray(args.include) ? args.include.join(", ") : undefined);
  return value === undefined ? "" : String(value);
}

/** gemini-cli writes a thought as `**Subject** description`; history keeps that raw text. */
function thoughtFromText(text) {
  const match = /^\s*\*\*(.+?)\*\*\s*([\s\S]*)$/.exec(text ?? "");
  return match ? {subject: match[1], description: match[2]} : {subject: "", description: text ?? ""};
}

function diffView(diff) {
  const pre = h("pre", {class: "diff"});
  for (const line of diff.replace(/\n$/, "").split("\n")) {
    const kind = line.startsWith("+++") || line.startsWith("---") ? "meta"
      : line.startsWith("@@") ? "hunk"
      : line.startsWith("+") ? "add"
      : line.startsWith("-") ? "del" : "ctx";
    pre.append(h("span", {class: `diff-${kind}`}, line), "\n");
  }
  return pre;
}

function clip(text) {
  const value = String(text ?? "");
  if (value.length <= RESULT_SHOWN_CHARS) return value;
  return `${value.slice(0, RESULT_SHOWN_CHARS)}\n… (${(value.length - RESULT_SHOWN_CHARS).toLocaleString()} more characters)`;
}

/** One answer of the agent: text, thoughts and tool calls in the order they came. */
class TurnView {
  constructor({onConfirm, onToolFinished}) {
    this.onConfirm = onConfirm;
    this.onToolFinished = onToolFinished;
    this.element = h("article", {class: "turn assistant", dataset: {state: "running"}});
    this.body = h("div", {class: "turn-body"});
    this.footer = h("footer", {class: "turn-footer"});
    this.element.append(h("div", {class: "avatar", "aria-hidden": "true"}, "G"), h("div", {class: "turn-main"}, this.body, this.footer));
    this.textBlock = null;
    this.text = "";
    this.tools = new Map();
    this.usage = null;
    this.renderQueued = false;
  }

  handle({type, data}) {
    switch (type) {
      case "content": return this.content(data.text ?? "");
      case "thought": return this.thought(data);
      case "tool_call": return this.toolCall(data);
      case "tool_confirmation": return this.confirmation(data);
      case "tool_result": return this.toolResult(data);
      case "todos": return this.todos(data);
      case "usage": return this.showUsage(data);
      case "error": return this.error(data);
      case "done": return this.done(data);
      default: return undefined; // an event this client does not know yet
    }
  }

  content(text) {
    if (!this.textBlock) {
      this.textBlock = h("div", {class: "markdown answer"});
      this.text = "";
      this.body.append(this.textBlock);
    }
    this.text += text;
    // Re-render at most once a frame: deltas can come faster than the page paints.
    if (!this.renderQueued) {
      this.renderQueued = true;
      requestAnimationFrame(() => this.flushText());
    }
  }

  flushText() {
    this.renderQueued = false;
    if (this.textBlock) replace(this.textBlock, renderMarkdown(this.text));
  }

  endTextBlock() {
    if (this.textBlock) this.flushText();
    this.textBlock = null;
  }

  thought({subject, description}) {
    this.endTextBlock();
    const block = h("details", {class: "thought"},
      h("summary", {}, h("span", {class: "thought-label"}, "Thinking"), subject ? ` · ${subject}` : ""),
      h("div", {class: "markdown"}, renderMarkdown(description ?? "")));
    this.body.append(block);
  }

  toolCall({callId, name, args}) {
    this.endTextBlock();
    if (this.tools.has(callId)) return this.tools.get(callId);
    const badge = h("span", {class: "badge"}, "running");
    const card = h("div", {class: "tool", dataset: {callId, status: "running", name}},
      h("div", {class: "tool-head"}, icon("tool"), h("span", {class: "tool-name"}, name),
        h("span", {class: "tool-summary"}, toolSummary(args)), badge),
      h("details", {class: "tool-args"}, h("summary", {}, "Arguments"), h("pre", {}, JSON.stringify(args ?? {}, null, 2))));
    const tool = {card, badge, name};
    this.tools.set(callId, tool);
    this.body.append(card);
    return tool;
  }

  setStatus(tool, status, label = status) {
    tool.card.dataset.status = status;
    tool.badge.textContent = label;
  }

  confirmation({callId, name, args, details = {}}) {
    const tool = this.tools.get(callId) ?? this.toolCall({callId, name, args});
    this.setStatus(tool, "waiting", "needs approval");
    const answered = h("p", {class: "confirm-answer", hidden: true});
    const problem = h("p", {class: "confirm-error", hidden: true});
    const buttons = [
      ["proceed_once", "Allow once", "primary"],
      ["proceed_always", "Always allow", ""],
      ["cancel", "Deny", "danger"],
    ].map(([outcome, label, kind]) =>
      h("button", {type: "button", class: kind, dataset: {outcome}, onclick: () => answer(outcome, label)}, label));
    const box = h("div", {class: "confirm", role: "group", "aria-label": `Approve ${name}`},
      h("div", {class: "confirm-title"}, details.title ?? (details.type === "exec" ? "Run this command?" : details.type === "edit" ? (details.isNewFile ? "Create this file?" : "Apply this change?") : `Allow ${name}?`)),
      details.filePath ? h("div", {class: "confirm-path"}, details.filePath, details.isNewFile ? h("span", {class: "tag"}, "new file") : null) : null,
      details.error ? h("p", {class: "confirm-error"}, details.error) : null,
      details.diff ? diffView(details.diff) : null,
      details.command ? h("pre", {class: "command"}, `$ ${details.command}`) : null,
      details.dirPath ? h("div", {class: "confirm-path"}, `in ${details.dirPath}`) : null,
      details.prompt ? h("p", {}, details.prompt) : null,
      h("div", {class: "actions"}, buttons), answered, problem);
    tool.card.append(box);
    tool.confirm = box;
    const answer = async (outcome, label) => {
      buttons.forEach((button) => { button.disabled = true; });
      problem.hidden = true;
      try {
        await this.onConfirm(callId, outcome);
        answered.textContent = `You chose: ${label}`;
        answered.hidden = false;
        box.querySelector(".actions").hidden = true;
        // The result may have come in before this answer did: it has the last word.
        if (tool.card.dataset.status === "waiting") {
          this.setStatus(tool, "running", outcome === "cancel" ? "denied" : "running");
        }
      } catch (error) {
        problem.textContent = error.message;
        problem.hidden = false;
        buttons.forEach((button) => { button.disabled = false; });
      }
    };
    return box;
  }

  toolResult({callId, name, status, result, durationMs}) {
    const tool = this.tools.get(callId) ?? this.toolCall({callId, name, args: {}});
    this.setStatus(tool, status ?? "success");
    if (tool.confirm) tool.confirm.querySelector(".actions").hidden = true;
    const label = durationMs !== undefined && durationMs !== null ? `Result · ${durationMs} ms` : "Result";
    const details = h("details", {class: "tool-result", open: status === "error"},
      h("summary", {}, label), h("pre", {}, clip(result)));
    tool.card.append(details);
    if (status === "success") this.onToolFinished?.(tool.name);
  }

  todos({todos = []}) {
    this.endTextBlock();
    const list = h("ul", {class: "todos"},
      todos.map((todo) => h("li", {dataset: {status: todo.status ?? "pending"}}, todo.description ?? "")));
    this.body.append(h("div", {class: "todo-block"}, h("div", {class: "todo-title"}, "Plan"), list));
  }

  showUsage(usage) {
    this.usage = usage;
    this.footer.querySelector(".usage")?.remove();
    this.footer.append(h("span", {class: "usage", title: "Tokens used by this answer"}, `Tokens: ${formatTokens(usage)}`));
  }

  error({code, message, retryable}) {
    this.endTextBlock();
    this.body.append(h("div", {class: "error-box", role: "alert"},
      h("strong", {}, code ?? "error"), ": ", message ?? "Something went wrong.",
      retryable ? " You can try again." : ""));
  }

  done({finishReason}) {
    this.endTextBlock();
    this.finished = true;
    this.element.dataset.state = "done";
    for (const tool of this.tools.values()) {
      if (tool.card.dataset.status === "running" || tool.card.dataset.status === "waiting") {
        this.setStatus(tool, "cancelled");
        if (tool.confirm) tool.confirm.querySelector(".actions").hidden = true;
      }
    }
    if (finishReason && finishReason !== "STOP") {
      const label = finishReason === "CANCELLED" ? "Cancelled" : `Stopped: ${finishReason}`;
      this.footer.prepend(h("span", {class: "finish", dataset: {reason: finishReason}}, label));
    }
  }

  /** The stream ended without `done` (the connection dropped). */
  interrupted(message) {
    if (this.finished) return;
    this.error({code: "disconnected", message});
    this.done({finishReason: "INTERRUPTED"});
  }
}

export class ChatView {
  constructor({api, session, user, onTurnFinished, onFilesChanged, onSessionChanged}) {
    this.api = api;
    this.session = session;
    this.user = user;
    this.onTurnFinished = onTurnFinished;
    this.onFilesChanged = onFilesChanged;
    this.onSessionChanged = onSessionChanged;
    this.running = false;
    this.loading = true; // no sending until the history is in place: it would replace the new turn
    this.abort = null;

    this.title = h("h2", {class: "session-title"});
    this.meta = h("div", {class: "session-meta"});
    this.usage = h("div", {class: "session-usage", title: "Tokens used in this session"});
    this.mode = h("select", {class: "mode-select", "aria-label": "Approval mode", onchange: () => this.changeMode()},
      APPROVAL_MODES.map(([value, label]) => h("option", {value, title: label}, value)));
    this.extendButton = h("button", {type: "button", class: "small", hidden: true, onclick: () => this.extend()}, "Extend 24 h");
    this.log = h("div", {class: "chat-log", role: "log", "aria-label": "Conversation"});
    this.input = h("textarea", {
      class: "composer-input", rows: 3, placeholder: "Ask the agent… (Enter to send, Shift+Enter for a new line)",
      "aria-label": "Message", onkeydown: (event) => this.keydown(event),
    });
    this.sendButton = h("button", {type: "submit", class: "primary send"}, "Send");
    this.cancelButton = h("button", {type: "button", class: "danger cancel", hidden: true, onclick: () => this.cancel()}, "Cancel");
    this.composerNote = h("div", {class: "composer-note", hidden: true});
    this.composer = h("form", {class: "composer", onsubmit: (event) => { event.preventDefault(); this.send(); }},
      this.input, h("div", {class: "composer-actions"}, this.cancelButton, this.sendButton), this.composerNote);
    this.filesToggle = h("button", {type: "button", class: "small files-toggle", onclick: () => document.body.classList.toggle("show-files")},
      icon("files"), "Files");
    this.element = h("section", {class: "chat", dataset: {sessionId: session.id}},
      h("header", {class: "chat-header"},
        h("div", {class: "chat-heading"}, this.title, this.meta),
        h("div", {class: "chat-controls"}, h("label", {class: "mode"}, "Approval ", this.mode), this.extendButton, this.filesToggle),
        this.usage),
      this.log, this.composer);
    this.update(session);
  }

  update(session) {
    this.session = session;
    this.title.textContent = session.title || "Untitled session";
    const expires = new Date(session.expiresAt);
    replace(this.meta,
      h("span", {class: "model"}, session.config?.model ?? ""),
      h("span", {}, `${session.messageCount} messages`),
      session.status === "expired"
        ? h("span", {class: "tag expired"}, "expired")
        : h("span", {title: expires.toString()}, `expires ${expires.toLocaleString([], {dateStyle: "short", timeStyle: "short"})}`));
    this.mode.value = session.config?.approvalMode ?? "default";
    this.usage.textContent = `Session tokens: ${formatTokens(session.usage)}`;
    this.extendButton.hidden = session.status !== "expired";
    this.updateComposer();
  }

  updateComposer() {
    const viewer = this.user?.role === "viewer";
    const expired = this.session.status === "expired";
    const blocked = viewer || expired;
    this.input.disabled = blocked || this.loading;
    this.sendButton.disabled = blocked || this.loading || this.running;
    this.sendButton.hidden = this.running;
    this.cancelButton.hidden = !this.running;
    this.mode.disabled = viewer;
    this.composerNote.hidden = !blocked;
    this.composerNote.textContent = viewer
      ? "Viewers can read sessions but not chat."
      : expired ? "This session has expired: extend it to chat again." : "";
    this.element.dataset.running = this.running ? "true" : "false";
  }

  nearBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 80;
  }

  scrollDown(force = false) {
    if (force || this.stickToBottom) this.log.scrollTop = this.log.scrollHeight;
  }

  async loadHistory() {
    this.loading = true;
    this.updateComposer();
    replace(this.log, h("div", {class: "empty"}, "Loading the conversation…"));
    let history;
    try {
      history = await this.api.history(this.session.id);
    } catch (error) {
      replace(this.log, h("div", {class: "error-box"}, `Could not load the conversation: ${error.message}`));
      return;
    } finally {
      this.loading = false;
      this.updateComposer();
    }
    this.log.replaceChildren();
    if (!history.length) this.log.append(this.emptyNote());
    let turn = null;
    const turnView = () => {
      if (!turn) {
        turn = this.newTurn();
        turn.usageSum = {promptTokens: 0, completionTokens: 0, totalTokens: 0};
      }
      return turn;
    };
    const closeTurn = () => {
      if (!turn) return;
      turn.done({finishReason: turn.lastFinish});
      if (turn.usageSum.totalTokens) turn.showUsage(turn.usageSum);
      turn = null;
    };
    for (const message of history) {
      if (message.role === "user") {
        closeTurn();
        this.log.append(this.userBubble(message.text || message.parts.map((p) => p.text ?? "").join("")));
        continue;
      }
      const view = turnView();
      for (const part of message.parts ?? []) {
        if (part.functionCall) {
          view.toolCall({callId: part.functionCall.id, name: part.functionCall.name, args: part.functionCall.args});
        } else if (part.functionResponse) {
          const response = part.functionResponse.response ?? {};
          const failed = "error" in response;
          view.toolResult({
            callId: part.functionResponse.id,
            name: part.functionResponse.name,
            status: failed ? "error" : "success",
            result: failed ? response.error : (response.output ?? JSON.stringify(response)),
          });
        } else if (part.thought && part.text) {
          view.thought(thoughtFromText(part.text));
        } else if (part.text) {
          view.content(part.text);
        }
      }
      if (message.role === "model") {
        view.endTextBlock();
        for (const key of Object.keys(view.usageSum)) view.usageSum[key] += message.usage?.[key] ?? 0;
      }
    }
    closeTurn();
    this.scrollDown(true);
  }

  emptyNote() {
    return h("div", {class: "empty"},
      h("p", {}, "No messages yet."),
      h("p", {}, "Ask the agent to read, change or run code in this session's workspace. Files you upload on the right are in /workspace."));
  }

  userBubble(text) {
    return h("article", {class: "turn user"}, h("div", {class: "bubble"}, text));
  }

  newTurn() {
    const turn = new TurnView({
      onConfirm: (callId, outcome) => this.api.confirm(this.session.id, callId, outcome),
      onToolFinished: (name) => { if (EDIT_TOOLS.has(name)) this.onFilesChanged?.(this.session.id); },
    });
    this.log.append(turn.element);
    return turn;
  }

  keydown(event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      this.send();
    }
  }

  async send() {
    const text = this.input.value;
    if (!text.trim() || this.running || this.loading) return;
    this.input.value = "";
    this.log.querySelector(":scope > .empty")?.remove();
    this.log.append(this.userBubble(text));
    const turn = this.newTurn();
    this.stickToBottom = true;
    this.scrollDown(true);
    this.running = true;
    this.updateComposer();
    this.abort = new AbortController();
    const observer = new MutationObserver(() => this.scrollDown());
    observer.observe(turn.element, {childList: true, subtree: true, characterData: true});
    const onScroll = () => { this.stickToBottom = this.nearBottom(); };
    this.log.addEventListener("scroll", onScroll);
    try {
      for await (const event of this.api.chat(this.session.id, text, {signal: this.abort.signal})) {
        turn.handle(event);
      }
      turn.interrupted("The connection closed before the answer finished.");
    } catch (error) {
      if (error.name === "AbortError") turn.interrupted("Stopped.");
      else if (error.status) {
        turn.error({code: error.code, message: error.message});
        turn.done({});
      } else turn.interrupted(`The connection failed: ${error.message}`);
    } finally {
      observer.disconnect();
      this.log.removeEventListener("scroll", onScroll);
      this.running = false;
      this.abort = null;
      this.updateComposer();
      this.onTurnFinished?.(this.session.id);
      if (!this.input.disabled) this.input.focus();
    }
  }

  async cancel() {
    this.cancelButton.disabled = true;
    try {
      await this.api.cancel(this.session.id);
    } catch {
      // The server may not know the turn (it just ended): stop reading the stream instead.
      this.abort?.abort();
    } finally {
      this.cancelButton.disabled = false;
    }
  }

  async changeMode() {
    const approvalMode = this.mode.value;
    try {
      const session = await this.api.updateSession(this.session.id, {config: {approvalMode}});
      this.update(session);
      this.onSessionChanged?.(session);
    } catch (error) {
      this.mode.value = this.session.config?.approvalMode ?? "default";
      this.log.append(h("div", {class: "error-box"}, `Could not change the approval mode: ${error.message}`));
    }
  }

  async extend() {
    try {
      const session = await this.api.extendSession(this.session.id, 24);
      this.update(session);
      this.onSessionChanged?.(session);
    } catch (error) {
      this.log.append(h("div", {class: "error-box"}, `Could not extend the session: ${error.message}`));
    }
  }

  /** Stops reading a running turn (the page is signing out); the server cancels it. */
  close() {
    this.abort?.abort();
  }
}
