// Just enough TOML for the zone editor: read the [[zones]] and [[privacy_regions]] tables of a device.toml
// and write them back, leaving every other line of the text as it was. The server validates the result.
"use strict";

const HEADER = /^\s*\[\[?\s*[A-Za-z_"][A-Za-z0-9_."\- ]*\]\]?\s*(#.*)?$/;
const SHAPES = /^\s*\[\[\s*(zones|privacy_regions)\s*\]\]\s*(#.*)?$/;

function stripComment(text) {
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "\\" && inString) { i++; continue; }
    if (c === "\"") inString = !inString;
    if (c === "#" && !inString) return text.slice(0, i);
  }
  return text;
}

function depth(text) {
  let d = 0, inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "\\" && inString) { i++; continue; }
    if (c === "\"") inString = !inString;
    else if (!inString && c === "[") d++;
    else if (!inString && c === "]") d--;
  }
  return d;
}

function parseValue(raw) {
  const text = raw.trim().replace(/,(\s*)\]/g, "$1]");
  if (text === "true" || text === "false") return text === "true";
  try { return JSON.parse(text); } catch (_) { return undefined; }
}

// Split the text into the shape blocks and the rest. Returns {rest: string, zones: [...], privacy: [...]}.
export function readShapes(text) {
  const rest = [];
  const blocks = [];
  let current = null;
  for (const line of (text || "").split("\n")) {
    const m = line.match(SHAPES);
    if (m) { current = {kind: m[1], lines: []}; blocks.push(current); continue; }
    if (current && HEADER.test(line)) current = null;
    if (current) current.lines.push(line); else rest.push(line);
  }
  const zones = [], privacy = [];
  for (const b of blocks) {
    const obj = {};
    let key = null, buf = "";
    for (const line of b.lines) {
      const body = stripComment(line);
      if (key === null) {
        const kv = body.match(/^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/);
        if (!kv) continue;
        key = kv[1]; buf = kv[2];
      } else {
        buf += ` ${body.trim()}`;
      }
      if (depth(buf) <= 0) {
        const v = parseValue(buf);
        if (v !== undefined) obj[key] = v;
        key = null; buf = "";
      }
    }
    (b.kind === "zones" ? zones : privacy).push(obj);
  }
  while (rest.length && rest[rest.length - 1].trim() === "") rest.pop();
  return {rest: rest.join("\n"), zones, privacy};
}

function fmt(v) {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") return Number.isInteger(v) ? `${v}.0`.replace(/\.0$/, "") : String(v);
  if (typeof v === "boolean") return v ? "true" : "false";
  if (Array.isArray(v)) return `[${v.map(fmt).join(", ")}]`;
  return JSON.stringify(String(v));
}

function point([x, y]) {
  const f = n => (Number.isInteger(n) ? `${n}.0` : String(n));
  return `[${f(x)}, ${f(y)}]`;
}

// The text with its shape tables replaced by these zones and privacy regions.
export function writeShapes(rest, zones, privacy) {
  const out = [rest.trimEnd()];
  for (const r of privacy) {
    out.push("", "[[privacy_regions]]", `name = ${fmt(r.name)}`, `polygon = [${r.polygon.map(point).join(", ")}]`);
  }
  for (const z of zones) {
    out.push("", "[[zones]]", `name = ${fmt(z.name)}`, `kind = ${fmt(z.kind)}`,
      `polygon = [${z.polygon.map(point).join(", ")}]`);
    for (const [k, v] of Object.entries(z)) {
      if (["name", "kind", "polygon"].includes(k) || v === undefined || v === null) continue;
      out.push(`${k} = ${fmt(v)}`);
    }
  }
  return `${out.join("\n").replace(/^\n+/, "")}\n`;
}
