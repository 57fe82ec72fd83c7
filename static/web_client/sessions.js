// The sessions sidebar: the user's sessions, newest activity first, and the form for a new one.

import {h, icon, formatTime, replace} from "./dom.js";

const MODELS = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite"];

/** A validation error's per-field details as lines: {config: {model: ["..."]}} -> ["model: ..."]. */
function fieldProblems(details, label = "") {
  if (Array.isArray(details)) return [`${label}${details.join(" ")}`];
  if (details && typeof details === "object") {
    return Object.entries(details).flatMap(([field, inner]) => fieldProblems(inner, `${field}: `));
  }
  return details ? [`${label}${details}`] : [];
}

export class SessionsView {
  constructor({api, onSelect, onCreated, onDeleted}) {
    this.api = api;
    this.onSelect = onSelect;
    this.onCreated = onCreated;
    this.onDeleted = onDeleted;
    this.sessions = [];
    this.selectedId = null;

    this.list = h("ul", {class: "session-list", "aria-label": "Sessions"});
    this.problem = h("p", {class: "form-error", role: "alert", hidden: true});
    this.titleInput = h("input", {name: "title", maxlength: 200, placeholder: "What are you working on?", autocomplete: "off"});
    this.modelInput = h("input", {name: "model", list: "model-choices", placeholder: "server default", autocomplete: "off", spellcheck: "false"});
    this.modeSelect = h("select", {name: "approvalMode"},
      h("option", {value: "default"}, "default: ask before edits and commands"),
      h("option", {value: "autoEdit"}, "autoEdit: edit files without asking"),
      h("option", {value: "yolo"}, "yolo: run everything without asking"),
      h("option", {value: "plan"}, "plan: read-only tools"));
    this.form = h("form", {class: "new-session", hidden: true, onsubmit: (event) => { event.preventDefault(); this.create(); }},
      h("label", {}, "Title", this.titleInput),
      h("label", {}, "Model", this.modelInput),
      h("datalist", {id: "model-choices"}, MODELS.map((model) => h("option", {value: model}))),
      h("label", {}, "Approval mode", this.modeSelect),
      this.problem,
      h("div", {class: "form-actions"},
        h("button", {type: "button", onclick: () => this.toggleForm(false)}, "Cancel"),
        h("button", {type: "submit", class: "primary"}, "Create")));
    this.newButton = h("button", {type: "button", class: "primary new-session-button", onclick: () => this.toggleForm()}, icon("plus"), "New session");
    this.element = h("nav", {class: "sidebar", "aria-label": "Sessions"},
      h("div", {class: "sidebar-top"}, this.newButton), this.form, this.list);
  }

  toggleForm(show = this.form.hidden) {
    this.form.hidden = !show;
    this.problem.hidden = true;
    if (show) this.titleInput.focus();
  }

  async load() {
    try {
      this.sessions = await this.api.sessions();
    } catch (error) {
      replace(this.list, h("li", {class: "error-box"}, `Could not load your sessions: ${error.message}`));
      return [];
    }
    this.render();
    return this.sessions;
  }

  /** Puts a fresh copy of one session in the list (after a turn, a mode change, …). */
  put(session) {
    const index = this.sessions.findIndex((item) => item.id === session.id);
    if (index === -1) this.sessions.unshift(session);
    else this.sessions[index] = session;
    this.sessions.sort((a, b) => (b.lastActivityAt ?? "").localeCompare(a.lastActivityAt ?? ""));
    this.render();
  }

  select(id) {
    this.selectedId = id;
    for (const item of this.list.children) {
      const selected = item.dataset.sessionId === id;
      item.classList.toggle("selected", selected);
      item.querySelector(".session-open")?.setAttribute("aria-current", selected ? "true" : "false");
    }
  }

  render() {
    this.list.replaceChildren();
    if (!this.sessions.length) {
      this.list.append(h("li", {class: "empty"}, "No sessions yet. Create one to start chatting."));
      return;
    }
    for (const session of this.sessions) {
      const remove = h("button", {type: "button", class: "icon-only session-delete danger-hover", title: "Delete session", "aria-label": "Delete session",
        onclick: () => this.remove(session, remove)}, icon("trash"));
      this.list.append(h("li", {class: `session-item${session.id === this.selectedId ? " selected" : ""}`, dataset: {sessionId: session.id}},
        h("button", {type: "button", class: "session-open", "aria-current": session.id === this.selectedId ? "true" : "false", onclick: () => this.onSelect(session.id)},
          h("span", {class: "session-line"},
            h("span", {class: "session-name"}, session.title || "Untitled session"),
            session.status === "expired"
              ? h("span", {class: "tag expired"}, "expired")
              : h("time", {datetime: session.lastActivityAt}, formatTime(session.lastActivityAt))),
          h("span", {class: "session-info"},
            h("span", {class: "session-model"}, session.config?.model ?? ""),
            h("span", {}, session.config?.approvalMode ?? ""))),
        remove));
    }
  }

  async create() {
    const config = {approvalMode: this.modeSelect.value};
    const title = this.titleInput.value.trim();
    const model = this.modelInput.value.trim();
    if (title) config.title = title;
    if (model) config.model = model;
    try {
      const {session} = await this.api.createSession(config);
      this.titleInput.value = "";
      this.modelInput.value = "";
      this.modeSelect.value = "default";
      this.toggleForm(false);
      this.put(session);
      this.onCreated(session);
    } catch (error) {
      const fields = fieldProblems(error.details);
      this.problem.textContent = fields.length ? `${error.message} (${fields.join("; ")})` : error.message;
      this.problem.hidden = false;
    }
  }

  async remove(session, button) {
    if (button.dataset.armed !== "true") {
      button.dataset.armed = "true";
      button.title = "Click again to delete this session and its workspace";
      setTimeout(() => { button.dataset.armed = "false"; button.title = "Delete session"; }, 3000);
      return;
    }
    try {
      await this.api.deleteSession(session.id);
    } catch (error) {
      if (error.status !== 404) {
        button.title = `Could not delete: ${error.message}`;
        return;
      }
    }
    this.sessions = this.sessions.filter((item) => item.id !== session.id);
    this.render();
    this.onDeleted(session.id);
  }
}
