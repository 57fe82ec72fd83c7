// The files pane: browse the session's workspace, preview text files, upload, download, delete.

import {h, icon, formatBytes, formatTime, replace} from "./dom.js";

const WORKSPACE = "/workspace";
const PREVIEW_MAX_BYTES = 256 * 1024;

function join(directory, name) {
  return `${directory.replace(/\/+$/, "")}/${name}`;
}

function looksLikeText(bytes) {
  const sample = bytes.subarray(0, 8000);
  if (sample.includes(0)) return false;
  try {
    new TextDecoder("utf-8", {fatal: true}).decode(sample.length < bytes.length ? sample.subarray(0, sample.length - 4) : sample);
    return true;
  } catch {
    return false;
  }
}

export class FilesView {
  constructor({api}) {
    this.api = api;
    this.sessionId = null;
    this.path = WORKSPACE;
    this.readOnly = false;
    this.crumbs = h("nav", {class: "crumbs", "aria-label": "Folder"});
    this.list = h("ul", {class: "file-list", "aria-label": "Workspace files"});
    this.status = h("div", {class: "files-status", role: "status"});
    this.fileInput = h("input", {type: "file", multiple: true, class: "file-input", "aria-label": "Upload files",
      onchange: () => this.upload([...this.fileInput.files])});
    this.uploadButton = h("button", {type: "button", class: "small", onclick: () => this.fileInput.click()}, icon("upload"), "Upload");
    this.preview = h("div", {class: "preview", hidden: true});
    this.element = h("aside", {class: "files", "aria-label": "Workspace files"},
      h("header", {class: "files-header"},
        h("h2", {}, "Files"),
        h("div", {class: "files-actions"},
          this.uploadButton,
          h("button", {type: "button", class: "small icon-only", title: "Refresh", "aria-label": "Refresh", onclick: () => this.refresh()}, icon("refresh")),
          h("button", {type: "button", class: "small icon-only close-files", title: "Close", "aria-label": "Close files", onclick: () => document.body.classList.remove("show-files")}, icon("close")))),
      this.crumbs, this.list, this.fileInput, this.status, this.preview);
    this.element.addEventListener("dragover", (event) => {
      if (!this.sessionId || this.readOnly) return;
      event.preventDefault();
      this.element.classList.add("dropping");
    });
    this.element.addEventListener("dragleave", () => this.element.classList.remove("dropping"));
    this.element.addEventListener("drop", (event) => {
      this.element.classList.remove("dropping");
      if (!this.sessionId || this.readOnly) return;
      event.preventDefault();
      this.upload([...event.dataTransfer.files]);
    });
    this.show(null);
  }

  show(sessionId, {readOnly = false} = {}) {
    const changed = sessionId !== this.sessionId;
    this.sessionId = sessionId;
    this.readOnly = readOnly;
    this.uploadButton.disabled = !sessionId || readOnly;
    if (changed) {
      this.path = WORKSPACE;
      this.closePreview();
      this.say("");
    }
    if (!sessionId) {
      this.crumbs.replaceChildren();
      replace(this.list, h("li", {class: "empty"}, "Pick a session to see its workspace."));
      return Promise.resolve();
    }
    return this.refresh();
  }

  say(text, kind = "") {
    this.status.textContent = text;
    this.status.dataset.kind = kind;
  }

  async refresh() {
    const sessionId = this.sessionId;
    if (!sessionId) return;
    let listing;
    try {
      listing = await this.api.listFiles(sessionId, this.path);
    } catch (error) {
      if (sessionId !== this.sessionId) return;
      if (error.status === 404 && this.path !== WORKSPACE) {
        this.path = WORKSPACE; // the folder went away (the agent removed it)
        return this.refresh();
      }
      this.say(`Could not list ${this.path}: ${error.message}`, "error");
      return;
    }
    if (sessionId !== this.sessionId) return;
    this.path = listing.path;
    this.renderCrumbs();
    // Rows that did not change are kept, not rebuilt: a refresh while the user clicks a row
    // (the agent wrote a file) must not swap the element between mouse down and up.
    const kept = new Map([...this.list.children].filter((row) => row.dataset.key).map((row) => [row.dataset.key, row]));
    const rows = listing.entries.map((entry) => {
      const key = JSON.stringify([entry.path, entry.type, entry.size, entry.modifiedAt, this.readOnly]);
      return kept.get(key) ?? this.row(entry, key);
    });
    if (!rows.length) rows.push(h("li", {class: "empty"}, "This folder is empty. Upload files or ask the agent to write some."));
    const current = [...this.list.children];
    if (rows.length !== current.length || rows.some((row, index) => row !== current[index])) {
      this.list.replaceChildren(...rows);
    }
  }

  renderCrumbs() {
    const parts = this.path.split("/").filter(Boolean);
    this.crumbs.replaceChildren();
    parts.forEach((part, index) => {
      const target = `/${parts.slice(0, index + 1).join("/")}`;
      if (index) this.crumbs.append(h("span", {class: "sep"}, "/"));
      const last = index === parts.length - 1;
      this.crumbs.append(last
        ? h("span", {class: "crumb current"}, part)
        : h("button", {type: "button", class: "crumb link", onclick: () => this.open(target)}, part));
    });
  }

  open(path) {
    this.path = path;
    this.closePreview();
    return this.refresh();
  }

  row(entry, key) {
    const directory = entry.type === "directory";
    const name = h("button", {
      type: "button", class: "file-name link", title: entry.path,
      onclick: () => (directory ? this.open(entry.path) : this.showPreview(entry)),
    }, icon(directory ? "folder" : "file"), entry.name);
    const actions = h("span", {class: "file-actions"});
    if (!directory) {
      actions.append(h("button", {type: "button", class: "icon-only", title: `Download ${entry.name}`, "aria-label": `Download ${entry.name}`,
        onclick: () => this.download(entry)}, icon("download")));
    }
    if (!this.readOnly) {
      const remove = h("button", {type: "button", class: "icon-only danger-hover", title: `Delete ${entry.name}`, "aria-label": `Delete ${entry.name}`,
        onclick: () => this.remove(entry, remove)}, icon("trash"));
      actions.append(remove);
    }
    return h("li", {class: "file-row", dataset: {type: entry.type, path: entry.path, name: entry.name, key}},
      name,
      h("span", {class: "file-meta"}, directory ? "" : formatBytes(entry.size), " ", h("time", {datetime: entry.modifiedAt, title: entry.modifiedAt}, formatTime(entry.modifiedAt))),
      actions);
  }

  async showPreview(entry) {
    const sessionId = this.sessionId;
    replace(this.preview, h("div", {class: "preview-head"}, h("strong", {}, entry.name),
      h("button", {type: "button", class: "icon-only", title: "Close preview", "aria-label": "Close preview", onclick: () => this.closePreview()}, icon("close"))),
    h("div", {class: "muted"}, "Loading…"));
    this.preview.hidden = false;
    if (entry.size > PREVIEW_MAX_BYTES) {
      this.preview.lastChild.textContent = `${formatBytes(entry.size)}: too large to preview here. Download it instead.`;
      return;
    }
    try {
      const blob = await this.api.downloadFile(sessionId, entry.path);
      if (sessionId !== this.sessionId) return;
      const bytes = new Uint8Array(await blob.arrayBuffer());
      const body = looksLikeText(bytes)
        ? h("pre", {class: "preview-text"}, new TextDecoder().decode(bytes))
        : h("div", {class: "muted"}, `Binary file, ${formatBytes(bytes.length)}. Download it to open it.`);
      this.preview.lastChild.replaceWith(body);
    } catch (error) {
      this.preview.lastChild.textContent = `Could not open ${entry.name}: ${error.message}`;
    }
  }

  closePreview() {
    this.preview.hidden = true;
    this.preview.replaceChildren();
  }

  async download(entry) {
    try {
      const blob = await this.api.downloadFile(this.sessionId, entry.path);
      const url = URL.createObjectURL(blob);
      const link = h("a", {href: url, download: entry.name, hidden: true});
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      this.say(`Downloaded ${entry.name}`);
    } catch (error) {
      this.say(`Could not download ${entry.name}: ${error.message}`, "error");
    }
  }

  async upload(files) {
    if (!files.length || !this.sessionId) return;
    const sessionId = this.sessionId;
    const done = [];
    for (const file of files) {
      this.say(`Uploading ${file.name}…`);
      try {
        await this.api.uploadFile(sessionId, join(this.path, file.name), file);
        done.push(file.name);
      } catch (error) {
        this.say(`Could not upload ${file.name}: ${error.message}`, "error");
        this.fileInput.value = "";
        await this.refresh();
        return;
      }
    }
    this.fileInput.value = "";
    this.say(`Uploaded ${done.join(", ")}`);
    if (sessionId === this.sessionId) await this.refresh();
  }

  async remove(entry, button) {
    // Two clicks, so a stray click cannot delete (and no blocking confirm() dialog).
    if (button.dataset.armed !== "true") {
      button.dataset.armed = "true";
      button.title = `Click again to delete ${entry.name}`;
      setTimeout(() => { button.dataset.armed = "false"; button.title = `Delete ${entry.name}`; }, 3000);
      return;
    }
    try {
      await this.api.deleteFile(this.sessionId, entry.path);
      this.say(`Deleted ${entry.name}`);
    } catch (error) {
      this.say(`Could not delete ${entry.name}: ${error.message}`, "error");
    }
    await this.refresh();
  }
}
