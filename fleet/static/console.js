// WardSight console: polls the fleet API and renders with textContent only (no HTML injection).
"use strict";
const REFRESH_MS = Number(document.body.dataset.refreshMs) || 2000;
const ONLINE_SECONDS = 120;

function fmtTime(epoch) {
  if (epoch === null || epoch === undefined) return "never";
  return new Date(epoch * 1000).toLocaleString();
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (typeof c === "object" && c !== null) { td.textContent = c.text; td.className = c.cls || ""; }
    else td.textContent = String(c);
    tr.appendChild(td);
  }
  return tr;
}

function fill(tbodyId, rows, emptyText, width) {
  const tbody = document.getElementById(tbodyId);
  tbody.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = width; td.className = "empty"; td.textContent = emptyText;
    tr.appendChild(td); tbody.appendChild(tr);
    return;
  }
  for (const r of rows) tbody.appendChild(r);
}

function details(data) {
  return Object.entries(data || {}).map(([k, v]) => `${k}=${v}`).join(", ");
}

let timer = null;
let csrf = null;

function show(signedIn, who) {
  document.getElementById("login").hidden = signedIn;
  document.getElementById("signed-in").hidden = !signedIn;
  document.getElementById("who").textContent = signedIn ? `Signed in as ${who.username} (${who.role})` : "";
  if (signedIn && timer === null) { refresh(); timer = setInterval(refresh, REFRESH_MS); }
  if (!signedIn && timer !== null) { clearInterval(timer); timer = null; }
  if (!signedIn) document.getElementById("status").textContent = "Sign in to see the fleet.";
}

async function checkSession() {
  const resp = await fetch("/api/v1/session", {credentials: "same-origin"});
  if (resp.ok) { const who = await resp.json(); csrf = who.csrf_token; show(true, who); } else show(false);
}

document.getElementById("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = {username: document.getElementById("username").value,
                password: document.getElementById("password").value};
  const resp = await fetch("/api/v1/session", {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  document.getElementById("password").value = "";
  if (resp.ok) { const who = await resp.json(); csrf = who.csrf_token; show(true, who); }
  else document.getElementById("status").textContent = `Sign-in failed: ${(await resp.json()).error}`;
});

document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/api/v1/session", {method: "DELETE", credentials: "same-origin", headers: {"X-CSRF-Token": csrf || ""}});
  csrf = null; show(false);
});

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [dr, er] = await Promise.all([fetch("/api/v1/devices"), fetch("/api/v1/events?limit=50")]);
    if (dr.status === 401 || er.status === 401) { show(false); return; }
    if (!dr.ok || !er.ok) throw new Error(`HTTP ${dr.status}/${er.status}`);
    const devices = await dr.json();
    const events = await er.json();
    fill("devices", devices.devices.map(d => {
      const online = d.last_seen !== null && devices.now - d.last_seen < ONLINE_SECONDS;
      const state = d.status && d.status !== "active" ? d.status : (online ? "online" : "offline");
      return row([d.id, d.name, d.room, fmtTime(d.last_seen), {text: state, cls: state}]);
    }), "No devices enrolled yet.", 5);
    fill("events", events.events.map(e => row([
      fmtTime(e.time), e.room, e.device_id, e.app, e.type,
      {text: e.severity, cls: "sev-" + e.severity}, details(e.data)])), "No events yet.", 7);
    status.textContent = `Updated ${new Date().toLocaleTimeString()} · ${devices.devices.length} device(s), ${events.events.length} recent event(s)`;
  } catch (err) {
    status.textContent = `Cannot reach the fleet server (${err.message}); retrying…`;
  }
}

checkSession();
