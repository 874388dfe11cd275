// The fleet API from the browser: session cookie, CSRF header on every change, JSON errors as ApiError.
"use strict";

const ROLE_RANK = {viewer: 0, operator: 1, admin: 2};

export const session = {username: null, role: null, csrf: null};
let onSignedOut = () => {};

export function setSignedOutHandler(fn) { onSignedOut = fn; }

export function can(role) {
  return session.role !== null && ROLE_RANK[session.role] >= ROLE_RANK[role];
}

export class ApiError extends Error {
  constructor(status, message, routeMissing, unreachable = false) {
    super(message);
    this.status = status;
    // The server has no such route at all (aiohttp's plain-text 404/405), as opposed to a JSON refusal.
    this.routeMissing = routeMissing;
    // The fleet server could not be reached (the request failed, or a gateway answered 502/503/504).
    this.unreachable = unreachable;
  }
}

// Whether the fleet server answers: ``lostSince`` is when contact was lost (ms since the epoch), null while it
// answers. The shell shows a banner from it; pages keep their last data instead of showing errors.
export const connection = {lostSince: null};
let onConnection = () => {};
const GATEWAY_DOWN = new Set([502, 503, 504]);

export function setConnectionHandler(fn) { onConnection = fn; }

function setReachable(reachable) {
  if (reachable === (connection.lostSince === null)) return;
  connection.lostSince = reachable ? null : Date.now();
  onConnection(connection);
}

// The last answer to each GET (in memory, at most CACHE_MAX, the oldest dropped first): while the server cannot be
// reached, a page opened again gets it (the shell greys the page as stale) instead of an error. A numeric ``now``
// (the server's time) moves on by the seconds since it was answered, so "ago" texts keep counting. Forgotten when
// anyone signs in or out, so another user never sees it.
const CACHE_MAX = 200;
const answers = new Map();  // path -> {body, at (ms)}
const UNCACHED = new Set(["/api/v1/session"]);

export function forgetAnswers() { answers.clear(); }

function remember(path, body) {
  if (UNCACHED.has(path) || body === null || typeof body !== "object") return;
  answers.delete(path);
  answers.set(path, {body, at: Date.now()});
  while (answers.size > CACHE_MAX) answers.delete(answers.keys().next().value);
}

function lastAnswer(path) {
  const hit = answers.get(path);
  if (!hit) return undefined;
  const body = structuredClone(hit.body);
  if (typeof body.now === "number") body.now += (Date.now() - hit.at) / 1000;
  return body;
}

// The server is unreachable: the last answer to this GET if there is one, else the error.
function unreachable(method, path, raw, error) {
  setReachable(false);
  const last = method === "GET" && !raw ? lastAnswer(path) : undefined;
  if (last === undefined) throw error;
  return last;
}

export async function request(method, path, body, {raw = false, signal} = {}) {
  if (path === "/api/v1/session" && method !== "GET") forgetAnswers();  // signing in or out
  const headers = {};
  const init = {method, headers, credentials: "same-origin", signal};
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (!["GET", "HEAD", "OPTIONS"].includes(method)) headers["X-CSRF-Token"] = session.csrf || "";
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    return unreachable(method, path, raw, new ApiError(0, "the fleet server cannot be reached", false, true));
  }
  if (GATEWAY_DOWN.has(resp.status)) {
    return unreachable(method, path, raw,
      new ApiError(resp.status, `the fleet server cannot be reached (HTTP ${resp.status})`, false, true));
  }
  setReachable(true);
  if (!resp.ok) {
    const type = resp.headers.get("Content-Type") || "";
    let message = `HTTP ${resp.status}`;
    if (type.includes("json")) {
      try { message = (await resp.json()).error || message; } catch (_) { /* keep the status text */ }
    }
    const missing = (resp.status === 404 || resp.status === 405) && !type.includes("json");
    if (resp.status === 401 && path !== "/api/v1/session") { forgetAnswers(); onSignedOut(message); }
    throw new ApiError(resp.status, message, missing);
  }
  if (raw) return resp;
  const type = resp.headers.get("Content-Type") || "";
  if (!type.includes("json")) return resp.text();
  const data = await resp.json();
  if (method === "GET") remember(path, structuredClone(data));
  return data;
}

export const get = (path, opts) => request("GET", path, undefined, opts);
export const post = (path, body = {}, opts) => request("POST", path, body, opts);
export const patch = (path, body, opts) => request("PATCH", path, body, opts);
export const del = (path, opts) => request("DELETE", path, undefined, opts);

// GET that answers null when the route does not exist on this server (a feature not built yet).
export async function getOptional(path, opts) {
  try {
    return await get(path, opts);
  } catch (err) {
    if (err instanceof ApiError && err.routeMissing) return null;
    throw err;
  }
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}
