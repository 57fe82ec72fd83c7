// The web chat client of gemini-server: sign in, sessions on the left, the chat in the middle,
// the session's workspace on the right. It uses the public REST and SSE API only.

import {Api} from "./api.js";
import {ChatView} from "./chat.js";
import {h, icon, replace} from "./dom.js";
import {FilesView} from "./files.js";
import {SessionsView} from "./sessions.js";

class App {
  constructor(root) {
    this.root = root;
    this.api = new Api({onSignedOut: () => this.showLogin("You were signed out. Please sign in again.")});
    this.chats = new Map();
    this.currentId = null;
  }

  start() {
    if (this.api.signedIn) this.showMain();
    else this.showLogin();
  }

  showLogin(message = "") {
    for (const chat of this.chats.values()) chat.close();
    this.chats.clear();
    this.currentId = null;
    document.body.className = "signed-out";
    const email = h("input", {type: "email", name: "email", autocomplete: "username", required: true});
    const password = h("input", {type: "password", name: "password", autocomplete: "current-password", required: true});
    const problem = h("p", {class: "form-error", role: "alert", hidden: !message}, message);
    const submit = h("button", {type: "submit", class: "primary"}, "Sign in");
    const form = h("form", {class: "login-card", onsubmit: async (event) => {
      event.preventDefault();
      submit.disabled = true;
      problem.hidden = true;
      try {
        await this.api.login(email.value.trim(), password.value);
        this.showMain();
      } catch (error) {
        problem.textContent = error.status === 429 && error.retryAfter
          ? `${error.message} Try again in ${error.retryAfter} s.`
          : error.message;
        problem.hidden = false;
        submit.disabled = false;
        password.select();
      }
    }},
      h("div", {class: "brand big"}, h("span", {class: "brand-mark"}, "G"), "gemini-server"),
      h("p", {class: "muted"}, "Sign in to chat with the coding agent."),
      h("label", {}, "Email", email),
      h("label", {}, "Password", password),
      problem,
      submit,
      h("p", {class: "muted small"}, "API documentation: ", h("a", {href: "/api/docs/"}, "/api/docs/")));
    replace(this.root, h("main", {class: "login"}, form));
    email.focus();
  }

  async showMain() {
    let user;
    try {
      user = await this.api.json("/api/v1/auth/me");
    } catch (error) {
      if (error.status !== 401) this.showLogin(`The server could not be reached: ${error.message}`);
      return; // a 401 has signed out already
    }
    this.user = user;
    document.body.className = "signed-in";
    this.sessions = new SessionsView({
      api: this.api,
      onSelect: (id) => this.select(id),
      onCreated: (session) => this.select(session.id),
      onDeleted: (id) => this.forget(id),
    });
    this.files = new FilesView({api: this.api});
    this.chatPane = h("main", {class: "chat-pane"});
    const header = h("header", {class: "topbar"},
      h("button", {type: "button", class: "icon-only sessions-toggle", title: "Sessions", "aria-label": "Sessions",
        onclick: () => document.body.classList.toggle("show-sessions")}, icon("menu")),
      h("div", {class: "brand"}, h("span", {class: "brand-mark"}, "G"), "gemini-server"),
      h("div", {class: "whoami"},
        h("span", {class: "user-email"}, user.email),
        h("span", {class: `tag role-${user.role}`}, user.role),
        h("button", {type: "button", class: "small", onclick: () => this.api.signOut()}, "Sign out")));
    replace(this.root, header, h("div", {class: "workspace-layout"}, this.sessions.element, this.chatPane, this.files.element));
    const sessions = await this.sessions.load();
    const wanted = new URLSearchParams(location.hash.slice(1)).get("session");
    const first = sessions.find((session) => session.id === wanted) ?? sessions[0];
    if (first) this.select(first.id);
    else this.showNoSession();
  }

  showNoSession() {
    this.currentId = null;
    replace(this.chatPane, h("div", {class: "welcome"},
      h("h2", {}, "Welcome"),
      h("p", {}, "Create a session to start: each session has its own workspace, history and approval mode."),
      h("button", {type: "button", class: "primary", onclick: () => this.sessions.toggleForm(true)}, icon("plus"), "New session")));
    this.files.show(null);
  }

  async select(id) {
    const session = this.sessions.sessions.find((item) => item.id === id);
    if (!session) return;
    this.currentId = id;
    history.replaceState(null, "", `#session=${id}`);
    this.sessions.select(id);
    document.body.classList.remove("show-sessions");
    let chat = this.chats.get(id);
    const fresh = !chat;
    if (fresh) {
      chat = new ChatView({
        api: this.api,
        session,
        user: this.user,
        onTurnFinished: (sessionId) => this.turnFinished(sessionId),
        onFilesChanged: (sessionId) => { if (sessionId === this.currentId) this.files.refresh(); },
        onSessionChanged: (changed) => this.sessionChanged(changed),
      });
      this.chats.set(id, chat);
    }
    replace(this.chatPane, chat.element);
    this.files.show(id, {readOnly: this.user.role === "viewer" || session.status === "expired"});
    if (fresh) await chat.loadHistory();
    if (!chat.running) chat.input.focus();
  }

  /** A session's settings or expiry changed in its chat header (mode, extend). */
  sessionChanged(session) {
    this.sessions.put(session);
    if (session.id === this.currentId) {
      this.files.show(session.id, {readOnly: this.user.role === "viewer" || session.status === "expired"});
    }
  }

  async turnFinished(sessionId) {
    try {
      const session = await this.api.session(sessionId);
      this.sessions.put(session);
      this.chats.get(sessionId)?.update(session);
    } catch {
      // The session was deleted meanwhile; the list shows what is left.
    }
    if (sessionId === this.currentId) this.files.refresh();
  }

  forget(id) {
    this.chats.get(id)?.close();
    this.chats.delete(id);
    if (id === this.currentId) {
      const next = this.sessions.sessions[0];
      if (next) this.select(next.id);
      else this.showNoSession();
    }
  }
}

new App(document.getElementById("app")).start();
