// A job's output (the diagnostics bundle: "== title ==" sections of "key = value" lines, job lines and log lines)
// as readable sections: key/value lists, a table of recent jobs, log lines in a wrapping <pre>. Never a JSON dump.
import {h, fmtTime, table, downloadBlob} from "./ui.js";
import {diagKey, kindLabel, spanWords} from "./job-words.js";

const KEY_VALUE = /^([A-Za-z0-9_.:-]+) = (.*)$/;
const JOB_LINE = /^(job-[0-9a-f]+) ([a-z_]+) ([a-z_]+)$/;
const TIME_KEY = /(^|[._])(time|at|since|until)$/;
const TITLES = {device: "Device", versions: "Versions", health: "Health", system: "System", config: "Configuration",
  jobs: "Recent jobs", "recent errors": "Recent warnings and errors", logs: "Log"};

// The text's sections in order: [{title, lines}] (text before any title goes in an untitled section).
export function parseSections(text) {
  const sections = [];
  let current = null;
  for (const line of String(text).split("\n")) {
    const title = /^== (.+) ==$/.exec(line);
    if (title) { current = {title: title[1], lines: []}; sections.push(current); continue; }
    if (current === null) { if (line === "") continue; current = {title: "", lines: []}; sections.push(current); }
    current.lines.push(line);
  }
  for (const s of sections) while (s.lines.length && s.lines[s.lines.length - 1] === "") s.lines.pop();
  return sections;
}

// A JSON-ish value ("\"text\"", "[[0.1, 0.2], ...]", "true", "12.5") in words, with the key's unit; times as
// dates (no epoch numbers), durations in words.
export function valueWords(raw, key = "") {
  const {unit, seconds} = diagKey(key);
  if (raw === "None" || raw === "null" || raw === "") return "not reported";
  let v = raw;
  try { v = JSON.parse(raw); } catch (_) { return /^[0-9.]+ of [0-9.]+$/.test(raw) ? `${raw}${unit}` : raw; }
  const words = x => {
    if (x === null || x === undefined) return "—";
    if (typeof x === "boolean") return x ? "yes" : "no";
    if (Array.isArray(x)) return x.length ? x.map(i => (Array.isArray(i) ? `(${i.map(words).join(", ")})` : words(i))).join(", ") : "none";
    if (typeof x === "object") return Object.entries(x).map(([k, i]) => `${k}: ${words(i)}`).join("; ") || "none";
    return String(x);
  };
  if (typeof v === "number" && TIME_KEY.test(key) && v > 1e9 && v < 1e11) return fmtTime(v);
  if (typeof v === "number" && seconds) return spanWords(v);
  if (typeof v === "number") return `${Number.isInteger(v) ? v : Number(v.toFixed(2))}${unit}`;
  return words(v);
}

function keyValues(title, lines) {
  return h("dl", {class: "kv", "aria-label": title},
    lines.map(line => {
      const [, key, value] = KEY_VALUE.exec(line);
      return [h("dt", {title: key}, diagKey(key).label), h("dd", {}, valueWords(value, key))];
    }));
}

function logLines(title, lines) {
  const pre = h("pre", {class: "log", tabIndex: 0, role: "region", "aria-label": title},
    lines.map(line => {
      const level = / (CRITICAL|ERROR|WARNING) /.exec(line);
      return h("span", {class: level ? `log-line log-${level[1].toLowerCase()}` : "log-line"}, `${line}\n`);
    }));
  return pre;
}

// The recent jobs: kind and state in words; the job's id last, short and muted (to match it with the jobs page).
function jobsTable(lines, headingId) {
  const t = table([
    {label: "Kind", cell: l => kindLabel(JOB_LINE.exec(l)[2])},
    {label: "State", cell: l => JOB_LINE.exec(l)[3].replace(/_/g, " ")},
    {label: "Job", cell: l => h("span", {class: "muted mono", title: JOB_LINE.exec(l)[1]}, shortId(JOB_LINE.exec(l)[1]))},
  ], lines);
  t.setAttribute("aria-labelledby", headingId);  // named by the section's heading: no second caption
  return t;
}

const shortId = id => (id.length > 12 ? `${id.slice(0, 12)}…` : id);

function sectionBody(title, lines, headingId) {
  const filled = lines.filter(l => l.trim() !== "");
  if (!filled.length) return h("p", {class: "muted"}, "Nothing reported.");
  if (filled.every(l => JOB_LINE.test(l))) return jobsTable(filled, headingId);
  if (filled.every(l => KEY_VALUE.test(l))) return keyValues(title, filled);
  return logLines(title, lines);
}

// The output of one device's job: a heading, a download of the text as it came, then each section.
export function outputView(text, {heading, filename, headingId}) {
  const sections = parseSections(text);
  const download = h("button", {type: "button"}, "Download as text");
  download.addEventListener("click", () => downloadBlob(filename, text, "text/plain"));
  return h("section", {class: "job-output", "aria-labelledby": headingId},
    h("div", {class: "page-head"}, h("h2", {id: headingId, tabIndex: -1}, heading), download),
    sections.length ? sections.map(({title, lines}, i) => {
      const name = TITLES[title] || (title ? title[0].toUpperCase() + title.slice(1) : "Output");
      const id = `${headingId}-s${i}`;
      return h("section", {class: "output-section"}, h("h3", {id}, name), sectionBody(name, lines, id));
    }) : h("p", {class: "muted"}, "The output is empty."));
}
