// DOM helpers. Text always goes in through textContent / createTextNode: no HTML is ever parsed from data.
"use strict";

let uid = 0;
export function nextId(prefix = "f") { uid += 1; return `${prefix}-${uid}`; }

// h("button", {class: "x", onclick: fn, "aria-label": "..."}, "text", child, ...)
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (["value", "checked", "selected", "disabled", "hidden", "required", "multiple", "readOnly",
              "type", "name", "min", "max", "step", "colSpan", "htmlFor", "id", "href", "download",
              "tabIndex", "placeholder", "autocomplete", "rows", "title", "width", "height",
              "scope", "open"].includes(key)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) { el.replaceChildren(); return el; }

// A labelled control: returns {wrap, input}. kind: input type, "select" (options [[value, text]]) or "textarea".
export function field(label, kind = "text", props = {}, options = []) {
  const id = props.id || nextId("in");
  let input;
  if (kind === "select") {
    input = h("select", {...props, id}, options.map(([v, t]) => h("option", {value: v}, t)));
    if (props.value !== undefined) input.value = props.value;
  } else if (kind === "textarea") {
    input = h("textarea", {...props, id});
  } else {
    input = h("input", {...props, id, type: kind});
  }
  const lab = h("label", {htmlFor: id}, label);
  const wrap = h("div", {class: kind === "checkbox" ? "field field-check" : "field"});
  if (kind === "checkbox") append(wrap, [input, lab]);
  else append(wrap, [lab, input]);
  return {wrap, input};
}

export function fmtTime(epoch) {
  if (epoch === null || epoch === undefined) return "—";
  const d = new Date(epoch * 1000);
  return d.toLocaleString(undefined, {year: "numeric", month: "short", day: "2-digit",
                                       hour: "2-digit", minute: "2-digit", second: "2-digit"});
}

export function fmtAgo(epoch, now) {
  if (epoch === null || epoch === undefined) return "never";
  const s = Math.max(0, (now ?? Date.now() / 1000) - epoch);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} d ago`;
}

export function fmtNum(value, digits = 1, unit = "") {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  return `${Number(value).toFixed(digits)}${unit}`;
}

// A data table. columns: [{label, cell: row => string | Node, cls?}]. Rows empty: one row saying so.
export function table(columns, rows, {caption, empty = "Nothing to show.", rowClass} = {}) {
  const thead = h("thead", {}, h("tr", {}, columns.map(c => h("th", {scope: "col"}, c.label))));
  const tbody = h("tbody");
  fillBody(tbody, columns, rows, empty, rowClass);
  return h("table", {}, caption ? h("caption", {}, caption) : null, thead, tbody);
}

export function fillBody(tbody, columns, rows, empty = "Nothing to show.", rowClass) {
  clear(tbody);
  if (!rows.length) {
    tbody.appendChild(h("tr", {}, h("td", {colSpan: columns.length, class: "empty"}, empty)));
    return;
  }
  for (const row of rows) {
    const tr = h("tr", {class: rowClass ? rowClass(row) : null});
    for (const c of columns) {
      const v = c.cell(row);
      tr.appendChild(h("td", {class: c.cls || null}, v instanceof Node ? v : (v ?? "—")));
    }
    tbody.appendChild(tr);
  }
}

// A generic table from an array of flat objects (report rows), keys of the first row as columns.
export function objectTable(rows, {caption, empty} = {}) {
  const keys = rows.length ? Object.keys(rows[0]) : [];
  const cols = keys.map(k => ({label: k.replace(/_/g, " "), cell: r => {
    const v = r[k];
    if (v === null || v === undefined) return "—";
    if (typeof v === "number" && /(compliance|rate)$/.test(k)) return `${(v * 100).toFixed(1)} %`;
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(2);
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }}));
  const t = table(cols.length ? cols : [{label: "result", cell: () => ""}], rows, {caption, empty});
  // Wide reports scroll sideways inside a focusable region (so the keyboard can scroll it too).
  return h("div", {class: "table-scroll", role: "region", tabIndex: 0, "aria-label": caption || "Table"}, t);
}

export function notice(text, kind = "info") {
  return h("p", {class: `notice notice-${kind}`}, text);
}

// The clearly-marked empty state for a feature whose server route is not there yet.
export function unavailable(feature, route) {
  return h("div", {class: "notice notice-unavailable", role: "note", "data-unavailable": route},
    h("strong", {}, `${feature}: not available on this server yet. `),
    `The console uses ${route}, which this fleet server does not serve.`);
}

export function badge(text, cls) {
  return h("span", {class: `badge ${cls || ""}`}, text);
}

// A button that runs an async action, disables itself meanwhile and reports the outcome to `report`; a success
// without a message still clears an error the status line showed (report.settle).
export function actionButton(label, action, {report, cls, ariaLabel, confirmText} = {}) {
  const btn = h("button", {type: "button", class: cls || null, "aria-label": ariaLabel || null}, label);
  btn.addEventListener("click", async () => {
    if (confirmText && !window.confirm(typeof confirmText === "function" ? confirmText() : confirmText)) return;
    btn.disabled = true;
    try {
      const msg = await action();
      if (report && msg) report(msg, "ok");
      else if (report && report.settle) report.settle();
    } catch (err) {
      if (report) report(`${label} failed: ${err.message}`, "error");
    } finally {
      btn.disabled = false;
    }
  });
  return btn;
}

// A status line (aria-live) that a page reports outcomes into: report(text, kind, key). An error stays until
// something replaces it or a later success settles it: report.settle() clears any error, report.settle(key) only
// an error reported with that key (a refresh that works again clears its own "Cannot load", not a refusal).
export function statusLine() {
  const el = h("p", {class: "page-status", role: "status", "aria-live": "polite"});
  let errorKey = null;
  const report = (text, kind = "ok", key = "") => {
    el.textContent = text;
    el.className = `page-status status-${kind}`;
    errorKey = kind === "error" ? key : null;
  };
  report.settle = key => {
    if (errorKey === null || (key !== undefined && key !== errorKey)) return;
    el.textContent = "";
    el.className = "page-status";
    errorKey = null;
  };
  return {el, report};
}

// Refusals that name a field ("invalid value for 'username': use ...", "missing field 'room'"): the control is
// marked invalid with the reason under it (aria-invalid, aria-describedby) until it is edited or the form succeeds.
// fields: {serverFieldName: field() result}. show(message) answers whether a field took the message.
export function fieldErrors(fields) {
  const shown = new Map();
  const clearOne = f => {
    const note = shown.get(f);
    if (!note) return;
    note.remove();
    f.input.removeAttribute("aria-invalid");
    f.input.removeAttribute("aria-describedby");
    shown.delete(f);
  };
  for (const f of Object.values(fields)) f.input.addEventListener("input", () => clearOne(f));
  const clearAll = () => { for (const f of [...shown.keys()]) clearOne(f); };
  const show = message => {
    clearAll();
    const named = [...String(message).matchAll(/'([A-Za-z0-9_.]+)'/g)].map(m => m[1]);
    const key = named.map(n => (fields[n] ? n : n.split(".").pop())).find(n => fields[n]);
    if (!key) return false;
    const f = fields[key];
    const note = h("p", {class: "field-error status-error", id: nextId("err")}, String(message).replace(/^.*?'[^']+':\s*/, ""));
    f.input.setAttribute("aria-invalid", "true");
    f.input.setAttribute("aria-describedby", note.id);
    f.wrap.appendChild(note);
    shown.set(f, note);
    return true;
  };
  return {show, clear: clearAll};
}

export function pageHeader(title, ...extra) {
  return h("div", {class: "page-head"}, h("h1", {tabIndex: -1, id: "page-title"}, title), ...extra);
}

export function epochFromInput(value) {
  if (!value) return null;
  const t = new Date(value).getTime();
  return Number.isNaN(t) ? null : t / 1000;
}

export function inputFromEpoch(epoch) {
  const d = new Date(epoch * 1000);
  const pad = n => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function downloadBlob(filename, text, type = "application/json") {
  const url = URL.createObjectURL(new Blob([text], {type}));
  const a = h("a", {href: url, download: filename, hidden: true});
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Re-render `container` with `fn` and put the focus back on the equivalent control, so periodic refreshes
// do not throw a keyboard user out of a table.
function signature(el) {
  return [el.tagName, el.getAttribute("href") || "", el.getAttribute("aria-label") || "", el.textContent].join("|");
}
export function keepFocus(container, fn) {
  const active = document.activeElement;
  const inside = active && active !== document.body && container.contains(active);
  const sig = inside ? signature(active) : null;
  fn();
  if (sig === null || container.contains(active)) return;
  for (const el of container.querySelectorAll(active.tagName)) {
    if (signature(el) === sig) { el.focus({preventScroll: true}); return; }
  }
}
