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

export async function request(method, path, body, {raw = false, signal} = {}) {
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
    setReachable(false);
    throw new ApiError(0, "the fleet server cannot be reached", false, true);
  }
  if (GATEWAY_DOWN.has(resp.status)) {
    setReachable(false);
    throw new ApiError(resp.status, `the fleet server cannot be reached (HTTP ${resp.status})`, false, true);
  }
  setReachable(true);
  if (!resp.ok) {
    const type = resp.headers.get("Content-Type") || "";
    let message = `HTTP ${resp.status}`;
    if (type.includes("json")) {
      try { message = (await resp.json()).error || message; } catch (_) { /* keep the status text */ }
    }
    const missing = (resp.status === 404 || resp.status === 405) && !type.includes("json");
    if (resp.status === 401 && path !== "/api/v1/session") onSignedOut(message);
    throw new ApiError(resp.status, message, missing);
  }
  if (raw) return resp;
  const type = resp.headers.get("Content-Type") || "";
  return type.includes("json") ? resp.json() : resp.text();
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
