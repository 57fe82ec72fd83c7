// A small Markdown renderer for model answers that builds DOM nodes and puts every piece of the
// model's text in with text nodes: markup in an answer (`<img onerror=...>`) shows as the text it is.
//
// Blocks: paragraphs, ATX headings, fenced code (``` or ~~~, unclosed while streaming), block
// quotes, bulleted and numbered lists (nested by indentation), GFM tables, rules.
// Inline: `code`, **strong**, *em* / _em_, ~~strike~~, [links](https://...), bare https:// URLs.
// Links are made only for http(s) and mailto addresses; images are shown as links, never loaded.

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}>/;
const LIST_ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:\s+(.*))?$/;
const TABLE_SEPARATOR = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;
const BLANK = /^\s*$/;
const ESCAPABLE = /[!-/:-@[-`{-~]/;
const SAFE_SCHEMES = ["http:", "https:", "mailto:"];

/** Renders Markdown source into a DocumentFragment. */
export function renderMarkdown(source) {
  const fragment = document.createDocumentFragment();
  renderBlocks(fragment, String(source ?? "").replace(/\r\n?/g, "\n").split("\n"));
  return fragment;
}

function startsBlock(line, next) {
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    RULE.test(line) ||
    QUOTE.test(line) ||
    LIST_ITEM.test(line) ||
    (line.includes("|") && next !== undefined && TABLE_SEPARATOR.test(next) && next.includes("-"))
  );
}

function renderBlocks(parent, lines) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (BLANK.test(line)) {
      i += 1;
      continue;
    }
    let match = FENCE.exec(line);
    if (match) {
      const fence = match[1];
      const closing = new RegExp(`^ {0,3}${fence[0] === "`" ? "`" : "~"}{${fence.length},}\\s*$`);
      const body = [];
      i += 1;
      while (i < lines.length && !closing.test(lines[i])) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1; // the closing fence; past the end while the answer is still streaming
      parent.append(codeBlock(body.join("\n"), match[2]));
      continue;
    }
    match = HEADING.exec(line);
    if (match) {
      const heading = document.createElement(`h${match[1].length}`);
      renderInline(heading, match[2] ?? "");
      parent.append(heading);
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      parent.append(document.createElement("hr"));
      i += 1;
      continue;
    }
    if (QUOTE.test(line)) {
      const quoted = [];
      while (i < lines.length && QUOTE.test(lines[i])) {
        quoted.push(lines[i].replace(/^ {0,3}> ?/, ""));
        i += 1;
      }
      const quote = document.createElement("blockquote");
      renderBlocks(quote, quoted);
      parent.append(quote);
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_SEPARATOR.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      i = renderTable(parent, lines, i);
      continue;
    }
    if (LIST_ITEM.test(line)) {
      i = renderList(parent, lines, i);
      continue;
    }
    const paragraph = [line.trim()];
    i += 1;
    while (i < lines.length && !BLANK.test(lines[i]) && !startsBlock(lines[i], lines[i + 1])) {
      paragraph.push(lines[i].trim());
      i += 1;
    }
    const p = document.createElement("p");
    renderInline(p, paragraph.join("\n"));
    parent.append(p);
  }
}

function codeBlock(text, language) {
  const pre = document.createElement("pre");
  const code = document.createElement("code");
  const lang = (language || "").replace(/[^\w+#.-]/g, "").slice(0, 30);
  if (lang) {
    code.className = `language-${lang}`;
    pre.dataset.language = lang;
  }
  code.textContent = text;
  pre.append(code);
  return pre;
}

function indentOf(line) {
  return line.length - line.trimStart().length;
}

function renderList(parent, lines, start) {
  const first = LIST_ITEM.exec(lines[start]);
  const baseIndent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const list = document.createElement(ordered ? "ol" : "ul");
  if (ordered) {
    const number = Number.parseInt(first[2], 10);
    if (number !== 1) list.start = number;
  }
  let i = start;
  let loose = false;
  while (i < lines.length) {
    const match = LIST_ITEM.exec(lines[i]);
    if (!match || match[1].length !== baseIndent || /\d/.test(match[2]) !== ordered) break;
    const contentIndent = baseIndent + match[2].length + 1;
    const body = [match[3] ?? ""];
    i += 1;
    while (i < lines.length) {
      const line = lines[i];
      if (BLANK.test(line)) {
        // A blank line continues the item only when indented content follows it.
        const next = lines[i + 1];
        if (next !== undefined && !BLANK.test(next) && indentOf(next) > baseIndent) {
          body.push("");
          i += 1;
          continue;
        }
        break;
      }
      const indent = indentOf(line);
      if (indent > baseIndent) {
        body.push(line.slice(Math.min(indent, contentIndent)));
      } else if (!startsBlock(line, lines[i + 1])) {
        body.push(line.trim()); // a lazy continuation of the item's paragraph
      } else {
        break;
      }
      i += 1;
    }
    loose ||= body.includes("");
    const item = document.createElement("li");
    renderBlocks(item, body);
    list.append(item);
  }
  if (!loose) {
    // A tight list (no blank lines between its lines): items hold their text, not paragraphs.
    for (const item of list.children) {
      for (const paragraph of [...item.children].filter((child) => child.tagName === "P")) {
        paragraph.replaceWith(...paragraph.childNodes);
      }
    }
  }
  parent.append(list);
  return i;
}

function splitRow(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  const cells = [];
  let cell = "";
  let inCode = false;
  for (let k = 0; k < row.length; k += 1) {
    const ch = row[k];
    if (ch === "\\" && row[k + 1] === "|") {
      cell += "|";
      k += 1;
    } else if (ch === "`") {
      inCode = !inCode;
      cell += ch;
    } else if (ch === "|" && !inCode) {
      cells.push(cell.trim());
      cell = "";
    } else {
      cell += ch;
    }
  }
  cells.push(cell.trim());
  return cells;
}

function renderTable(parent, lines, start) {
  const header = splitRow(lines[start]);
  const aligns = splitRow(lines[start + 1]).map((spec) => {
    const left = spec.startsWith(":");
    const right = spec.endsWith(":");
    return left && right ? "center" : right ? "right" : left ? "left" : "";
  });
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  header.forEach((text, column) => {
    const th = document.createElement("th");
    if (aligns[column]) th.style.textAlign = aligns[column];
    renderInline(th, text);
    head.append(th);
  });
  const body = table.createTBody();
  let i = start + 2;
  while (i < lines.length && !BLANK.test(lines[i]) && lines[i].includes("|")) {
    const row = body.insertRow();
    const cells = splitRow(lines[i]);
    header.forEach((_, column) => {
      const td = row.insertCell();
      if (aligns[column]) td.style.textAlign = aligns[column];
      renderInline(td, cells[column] ?? "");
    });
    i += 1;
  }
  const wrapper = document.createElement("div");
  wrapper.className = "table-scroll";
  wrapper.append(table);
  parent.append(wrapper);
  return i;
}

/** A link target the page may follow: absolute http(s) or mailto only, else null. */
export function safeUrl(raw) {
  const text = String(raw ?? "").trim();
  if (!/^(https?:\/\/|mailto:)/i.test(text)) return null;
  try {
    const url = new URL(text);
    return SAFE_SCHEMES.includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function link(href, label) {
  const a = document.createElement("a");
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  if (typeof label === "string") a.textContent = label;
  else renderInline(a, label.source);
  return a;
}

function isWordChar(ch) {
  return ch !== undefined && /[\p{L}\p{N}_]/u.test(ch);
}

/** For every `[` in the text, the index of the `]` that closes it (one pass, with a stack). */
function bracketPairs(text) {
  const pairs = new Map();
  const open = [];
  for (let k = 0; k < text.length; k += 1) {
    if (text[k] === "\\") k += 1;
    else if (text[k] === "[") open.push(k);
    else if (text[k] === "]" && open.length) pairs.set(open.pop(), k);
  }
  return pairs;
}

/** Parses `(url "title")` at `open`; returns {url, end} or null. */
function linkTarget(text, open) {
  if (text[open] !== "(") return null;
  let depth = 0;
  for (let k = open; k < text.length; k += 1) {
    if (text[k] === "(") depth += 1;
    else if (text[k] === ")" && --depth === 0) {
      const inside = text.slice(open + 1, k).trim();
      const url = inside.replace(/\s+(["'(]).*$/, "").replace(/^<(.*)>$/, "$1");
      return {url, end: k + 1};
    }
    else if (text[k] === "\n") return null;
  }
  return null;
}

/** Finds a closing emphasis delimiter `marker` after `from`, not preceded by whitespace. */
function closingDelimiter(text, marker, from) {
  let k = text.indexOf(marker, from);
  while (k !== -1) {
    const before = text[k - 1];
    const after = text[k + marker.length];
    const ok =
      k > from &&
      !/\s/.test(before) &&
      (marker.length === 2 || (after !== marker && before !== marker)) &&
      (marker[0] !== "_" || !isWordChar(after));
    if (ok) return k;
    k = text.indexOf(marker, k + 1);
  }
  return -1;
}

const EMPHASIS = [
  ["**", "strong"],
  ["__", "strong"],
  ["~~", "del"],
  ["*", "em"],
  ["_", "em"],
];

/** Appends the inline content of `text` to `parent`, as text nodes and a few safe elements. */
export function renderInline(parent, text) {
  let buffer = "";
  // Where a search for a closing delimiter came up empty: no later search can succeed either,
  // so text with many unmatched `*` or backticks stays linear instead of quadratic.
  const unclosedFrom = new Map();
  let brackets = null;
  const closer = (key, find, from) => {
    if (unclosedFrom.has(key) && from >= unclosedFrom.get(key)) return -1;
    const found = find();
    if (found === -1) unclosedFrom.set(key, from);
    return found;
  };
  const flush = () => {
    if (buffer) parent.append(buffer);
    buffer = "";
  };
  let i = 0;
  outer: while (i < text.length) {
    const ch = text[i];
    if (ch === "\\" && ESCAPABLE.test(text[i + 1] ?? "")) {
      buffer += text[i + 1];
      i += 2;
      continue;
    }
    if (ch === "\n") {
      flush();
      parent.append(document.createElement("br"));
      i += 1;
      continue;
    }
    if (ch === "`") {
      const run = /^`+/.exec(text.slice(i))[0];
      const close = closer(`code${run.length}`, () => {
        let at = text.indexOf(run, i + run.length);
        while (at !== -1 && (text[at + run.length] === "`" || text[at - 1] === "`")) {
          at = text.indexOf(run, at + 1);
        }
        return at;
      }, i + run.length);
      if (close !== -1) {
        let inner = text.slice(i + run.length, close).replace(/\n/g, " ");
        if (/^ .*[^ ].* $/.test(inner)) inner = inner.slice(1, -1);
        flush();
        const code = document.createElement("code");
        code.textContent = inner;
        parent.append(code);
        i = close + run.length;
        continue;
      }
      buffer += run;
      i += run.length;
      continue;
    }
    if (ch === "[" || (ch === "!" && text[i + 1] === "[")) {
      const open = ch === "!" ? i + 1 : i;
      brackets ??= bracketPairs(text);
      const close = brackets.get(open) ?? -1;
      const target = close === -1 ? null : linkTarget(text, close + 1);
      if (target) {
        const label = text.slice(open + 1, close);
        const href = safeUrl(target.url);
        flush();
        if (ch === "!") {
          // Images are not loaded from model output: a link to them at most.
          const alt = label || "image";
          parent.append(href ? link(href, `[image: ${alt}]`) : `[image: ${alt}]`);
        } else if (href) {
          parent.append(link(href, {source: label}));
        } else {
          renderInline(parent, label);
        }
        i = target.end;
        continue;
      }
    }
    if (ch === "<") {
      const auto = /^<((?:https?:\/\/|mailto:)[^\s<>]+)>/i.exec(text.slice(i));
      const href = auto && safeUrl(auto[1]);
      if (href) {
        flush();
        parent.append(link(href, auto[1]));
        i += auto[0].length;
        continue;
      }
    }
    if ((ch === "h" || ch === "H") && !isWordChar(text[i - 1])) {
      const bare = /^https?:\/\/[^\s<>]*[^\s<>.,;:!?'")\]*_~]/i.exec(text.slice(i));
      const href = bare && safeUrl(bare[0]);
      if (href) {
        flush();
        parent.append(link(href, bare[0]));
        i += bare[0].length;
        continue;
      }
    }
    for (const [marker, tag] of EMPHASIS) {
      if (!text.startsWith(marker, i)) continue;
      const after = text[i + marker.length];
      if (after === undefined || /\s/.test(after)) continue;
      if (marker[0] === "_" && isWordChar(text[i - 1])) continue;
      const close = closer(marker, () => closingDelimiter(text, marker, i + marker.length), i + marker.length);
      if (close === -1) continue;
      flush();
      const element = document.createElement(tag);
      renderInline(element, text.slice(i + marker.length, close));
      parent.append(element);
      i = close + marker.length;
      continue outer;
    }
    buffer += ch;
    i += 1;
  }
  flush();
}
