// The public REST API of gemini-server, as this page uses it: JWT sign-in, JSON calls, raw file
// transfers and the chat's Server-Sent Events read from a POST with fetch() (EventSource cannot POST).

const STORAGE_KEY = "gemini-server.auth";

export class ApiError extends Error {
  constructor(status, code, message, details = {}, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body?.error ?? {};
  return new ApiError(
    response.status,
    error.code ?? "http_error",
    error.message ?? `The server answered ${response.status} ${response.statusText}`,
    error.details ?? {},
    response.headers.get("Retry-After"),
  );
}

/** The frames of a `text/event-stream` body: yields {id, type, data} for every `data:` frame. */
export async function* sseFrames(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    while (true) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let id = null;
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue; // keep-alive comment
          const colon = line.indexOf(":");
          const field = colon === -1 ? line : line.slice(0, colon);
          const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") data.push(value);
          else if (field === "id") id = value;
        }
        if (data.length) {
          const frame = JSON.parse(data.join("\n"));
          yield {id, type: frame.type, data: frame.data ?? {}};
        }
      }
    }
  } finally {
    reader.releaseLock();
  }
}

export class Api {
  constructor({onSignedOut} = {}) {
    this.onSignedOut = onSignedOut ?? (() => {});
    this.auth = null;
    try {
      this.auth = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? "null");
    } catch {
      this.auth = null;
    }
  }

  get user() {
    return this.auth?.user ?? null;
  }

  get signedIn() {
    return Boolean(this.auth?.accessToken);
  }

  store(auth) {
    this.auth = auth;
    if (auth) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(auth));
    else sessionStorage.removeItem(STORAGE_KEY);
  }

  async login(email, password) {
    const response = await fetch("/api/v1/auth/login", {
      method: "POST",
      headers: {"Content-Type": "application/json", Accept: "application/json"},
      body: JSON.stringify({email, password}),
    });
    if (!response.ok) throw await errorFrom(response);
    const body = await response.json();
    this.store({accessToken: body.accessToken, refreshToken: body.refreshToken, user: body.user});
    return body.user;
  }

  signOut() {
    this.store(null);
    this.onSignedOut();
  }

  async refresh() {
    if (!this.auth?.refreshToken) return false;
    const response = await fetch("/api/v1/auth/refresh", {
      method: "POST",
      headers: {"Content-Type": "application/json", Accept: "application/json"},
      body: JSON.stringify({refreshToken: this.auth.refreshToken}),
    });
    if (!response.ok) return false;
    const body = await response.json();
    this.store({...this.auth, accessToken: body.accessToken});
    return true;
  }

  /** fetch() with the bearer token; one refresh and retry on 401, then signs out. */
  async fetch(path, {method = "GET", query, json, body, headers = {}, signal} = {}) {
    let url = path;
    if (query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) {
        if (value !== undefined && value !== null) params.set(key, value);
      }
      url += `?${params}`;
    }
    const send = () =>
      fetch(url, {
        method,
        signal,
        headers: {
          ...(json !== undefined ? {"Content-Type": "application/json"} : {}),
          ...headers,
          Authorization: `Bearer ${this.auth?.accessToken ?? ""}`,
        },
        body: json !== undefined ? JSON.stringify(json) : body,
      });
    let response = await send();
    if (response.status === 401 && (await this.refresh())) response = await send();
    if (response.status === 401) {
      const error = await errorFrom(response);
      this.signOut();
      throw error;
    }
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  async json(path, options = {}) {
    const response = await this.fetch(path, {
      ...options,
      headers: {Accept: "application/json", ...(options.headers ?? {})},
    });
    return response.status === 204 ? null : response.json();
  }

  // Sessions.
  sessions() {
    return this.json("/api/v1/sessions").then((body) => body.sessions);
  }
  session(id) {
    return this.json(`/api/v1/sessions/${id}`).then((body) => body.session);
  }
  createSession(config) {
    return this.json("/api/v1/sessions", {method: "POST", json: {config}});
  }
  updateSession(id, changes) {
    return this.json(`/api/v1/sessions/${id}`, {method: "PATCH", json: changes}).then((b) => b.session);
  }
  extendSession(id, hours) {
    return this.json(`/api/v1/sessions/${id}/extend`, {method: "PUT", json: {hours}}).then((b) => b.session);
  }
  deleteSession(id) {
    return this.json(`/api/v1/sessions/${id}`, {method: "DELETE"});
  }

  // Workspace files.
  listFiles(id, path) {
    return this.json(`/api/v1/sessions/${id}/files`, {query: {path}});
  }
  async downloadFile(id, path) {
    const response = await this.fetch(`/api/v1/sessions/${id}/files/content`, {query: {path}});
    return response.blob();
  }
  uploadFile(id, path, file) {
    return this.json(`/api/v1/sessions/${id}/files/content`, {
      method: "PUT",
      query: {path},
      body: file,
      headers: {"Content-Type": "application/octet-stream"},
    });
  }
  deleteFile(id, path) {
    return this.json(`/api/v1/sessions/${id}/files/content`, {method: "DELETE", query: {path}});
  }

  // Chat.
  history(sessionId) {
    return this.json("/api/v1/chat/history", {query: {sessionId}}).then((body) => body.history);
  }
  confirm(sessionId, callId, outcome) {
    return this.json("/api/v1/chat/confirm", {method: "POST", json: {sessionId, callId, outcome}});
  }
  cancel(sessionId) {
    return this.json("/api/v1/chat/cancel", {method: "POST", json: {sessionId}});
  }

  /** Sends a message; yields the turn's events ({type, data}) as they stream in. */
  async *chat(sessionId, message, {signal} = {}) {
    const response = await this.fetch("/api/v1/chat/message", {
      method: "POST",
      json: {sessionId, message},
      // DRF negotiates on Accept: a bare text/event-stream would be refused (406) before the stream
      // starts; errors before the stream come back as JSON.
      headers: {Accept: "text/event-stream, application/json"},
      signal,
    });
    yield* sseFrames(response.body);
  }
}
