// Alerts: a live feed (server-sent events, no reload), acknowledge and resolve with who and when, per-room history.
import {can, get, getOptional, post, query} from "./api.js";
import {h, clear, field, fmtTime, pageHeader, badge, statusLine, unavailable, table, notice} from "./ui.js";

const SEVERITY_RANK = {critical: 0, warning: 1, info: 2};
const FEED_LIMIT = 200;

function alertsOf(data) {
  if (!data) return [];
  return Array.isArray(data) ? data : (data.alerts || []);
}

function idOf(a) { return a.id ?? a.alert_id ?? a.event_id; }

function stateOf(a) {
  if (a.state || a.status) return a.state || a.status;
  if (a.resolved_at) return "resolved";
  if (a.acknowledged_at) return "acknowledged";
  return "open";
}

function describe(a) {
  const sev = a.severity || "info";
  return `${sev} ${a.app || ""} ${a.type || ""} in room ${a.room || "?"}`.replace(/\s+/g, " ");
}

// ---- the alert count in the navigation (one shared EventSource while signed in) -----------------------

let badgeSource = null;
let badgeTimer = null;

export function startAlertBadge(el) {
  stopAlertBadge();
  const update = async () => {
    try {
      const data = await getOptional(`/api/v1/alerts${query({state: "open"})}`);
      if (data === null) { el.hidden = true; return false; }
      const open = alertsOf(data).filter(a => stateOf(a) === "open").length;
      el.textContent = String(open);
      el.setAttribute("aria-label", `${open} open alerts`);
      el.hidden = open === 0;
      return true;
    } catch (_) { return true; }
  };
  update().then(present => {
    if (!present) return;
    badgeTimer = setInterval(update, 30000);
    try {
      badgeSource = new EventSource("/api/v1/alerts/stream");
      badgeSource.addEventListener("message", update);
      for (const kind of ["alert", "update"]) badgeSource.addEventListener(kind, update);
    } catch (_) { /* polling only */ }
  });
}

export function stopAlertBadge() {
  if (badgeSource) { badgeSource.close(); badgeSource = null; }
  if (badgeTimer) { clearInterval(badgeTimer); badgeTimer = null; }
}

// ---- the page -------------------------------------------------------------------------------------------

export async function render(root, ctx) {
  const {el: statusEl, report} = statusLine();
  const live = h("p", {class: "sr-only", "aria-live": "assertive", id: "alert-announcer"});
  const connection = h("span", {class: "muted", id: "feed-connection"}, "connecting…");
  const showResolved = field("Show resolved alerts", "checkbox");
  const feed = h("ol", {class: "feed", id: "alert-feed", "aria-label": "Alert feed, newest first", "aria-live": "polite",
    "aria-relevant": "additions"});
  const roomField = field("Room", "text", {placeholder: "e.g. 3B-12", autocomplete: "off", pattern: "[A-Za-z0-9][A-Za-z0-9_.:-]*"});
  const historyOut = h("div", {id: "room-history"});
  const historyForm = h("form", {class: "inline-form", "aria-label": "Room history"}, roomField.wrap,
    h("button", {type: "submit"}, "Show history"));
  root.append(pageHeader("Alerts", h("p", {class: "muted"}, "Live feed: ", connection)), statusEl, live,
    h("div", {class: "toolbar"}, showResolved.wrap), feed,
    h("h2", {}, "History per room"), historyForm, historyOut);
  if (!can("operator")) root.insertBefore(notice("Read-only: acknowledging and resolving needs the operator role."), feed);

  const alerts = new Map();
  let source = null;
  let poll = null;
  let streamAfter = null;

  function alertItem(a) {
    const state = stateOf(a);
    const sev = a.severity || "info";
    const id = idOf(a);
    const li = h("li", {class: `alert sev-${sev} state-${state}`, dataset: {alertId: String(id)}});
    const head = h("p", {class: "alert-head"},
      badge(sev, `sev sev-${sev}`), " ",
      h("strong", {}, `${a.app || "?"} · ${a.type || "?"}`), " in room ",
      h("a", {href: `#/alerts?room=${encodeURIComponent(a.room || "")}`, "aria-label": `History of room ${a.room}`}, a.room || "?"),
      h("span", {class: "muted"}, ` · ${fmtTime(a.time ?? a.created_at ?? a.received_at)}`),
      a.device_id ? h("span", {class: "muted"}, " · ", h("a", {href: `#/devices/${encodeURIComponent(a.device_id)}`}, a.device_id)) : null);
    const who = h("p", {class: "alert-who"}, badge(state, `state state-${state}`));
    if (a.acknowledged_at) who.append(` Acknowledged by ${a.acknowledged_by || "?"} at ${fmtTime(a.acknowledged_at)}.`);
    if (a.resolved_at) who.append(` Resolved by ${a.resolved_by || "?"} at ${fmtTime(a.resolved_at)}.`);
    li.append(head, who);
    if (can("operator") && state !== "resolved") {
      const actions = h("p", {class: "actions"});
      if (state === "open") {
        actions.appendChild(h("button", {type: "button", class: "primary",
          "aria-label": `Acknowledge ${describe(a)}`, onclick: () => act(id, "acknowledge")}, "Acknowledge"));
      }
      actions.appendChild(h("button", {type: "button", "aria-label": `Resolve ${describe(a)}`,
        onclick: () => act(id, "resolve")}, "Resolve"));
      li.appendChild(actions);
    }
    return li;
  }

  function draw() {
    const list = [...alerts.values()]
      .filter(a => showResolved.input.checked || stateOf(a) !== "resolved")
      .sort((x, y) => (y.received_at ?? y.time ?? 0) - (x.received_at ?? x.time ?? 0) ||
        (SEVERITY_RANK[x.severity] ?? 3) - (SEVERITY_RANK[y.severity] ?? 3))
      .slice(0, FEED_LIMIT);
    // Keep focus on the same alert's button across redraws.
    const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("[data-alert-id]");
    const focusId = focused ? focused.dataset.alertId : null;
    clear(feed);
    if (!list.length) feed.appendChild(h("li", {class: "empty"}, "No open alerts."));
    for (const a of list) feed.appendChild(alertItem(a));
    if (focusId) {
      const again = feed.querySelector(`[data-alert-id="${CSS.escape(focusId)}"] button`);
      if (again) again.focus();
    }
  }

  function upsert(a, announce) {
    const id = idOf(a);
    if (id === undefined || id === null) return;
    const known = alerts.has(String(id));
    alerts.set(String(id), {...(alerts.get(String(id)) || {}), ...a});
    if (announce && !known) live.textContent = `New ${describe(a)}`;
  }

  async function act(id, action) {
    try {
      const updated = await post(`/api/v1/alerts/${encodeURIComponent(id)}/${action}`, {});
      if (updated && typeof updated === "object") upsert(updated.alert || updated, false);
      report(`Alert ${action === "acknowledge" ? "acknowledged" : "resolved"}.`, "ok");
      draw();
    } catch (err) {
      report(`Could not ${action} the alert: ${err.message}`, "error");
    }
  }

  async function loadAll() {
    const data = await getOptional("/api/v1/alerts?limit=200");
    if (data === null) return false;
    for (const a of alertsOf(data)) upsert(a, false);
    streamAfter = data.stream_after;
    draw();
    return true;
  }

  function onStreamMessage(ev) {
    let data;
    try { data = JSON.parse(ev.data); } catch (_) { return; }
    if (data.kind === "ready") { connection.textContent = "connected"; return; }
    const items = Array.isArray(data) ? data : [data.alert || data];
    for (const a of items) upsert(a, data.kind === "alert" || data.kind === undefined);
    draw();
  }

  async function fallbackToEvents() {
    root.insertBefore(unavailable("Live alerts", "GET /api/v1/alerts and /api/v1/alerts/stream"), feed);
    connection.textContent = "polling recent events instead";
    const refresh = async () => {
      try {
        const data = await get("/api/v1/events?limit=100");
        for (const e of data.events) {
          if (e.severity === "info") continue;
          upsert({id: e.event_id, room: e.room, app: e.app, type: e.type, severity: e.severity, time: e.time,
            device_id: e.device_id, state: "unacknowledgeable"}, true);
        }
        draw();
      } catch (err) { report(`Cannot load events: ${err.message}`, "error"); }
    };
    await refresh();
    poll = setInterval(refresh, ctx.refreshMs);
  }

  async function showHistory(room) {
    clear(historyOut);
    if (!room) return;
    roomField.input.value = room;
    try {
      const data = await getOptional(`/api/v1/rooms/${encodeURIComponent(room)}/alerts`);
      if (data === null) { historyOut.appendChild(unavailable("Room history", "GET /api/v1/rooms/{room}/alerts")); return; }
      const rows = alertsOf(data);
      historyOut.appendChild(table([
        {label: "Time", cell: a => fmtTime(a.time ?? a.created_at)},
        {label: "Severity", cell: a => badge(a.severity || "info", `sev sev-${a.severity || "info"}`)},
        {label: "App", cell: a => a.app},
        {label: "Event", cell: a => a.type},
        {label: "State", cell: a => stateOf(a)},
        {label: "Acknowledged", cell: a => (a.acknowledged_at ? `${a.acknowledged_by} · ${fmtTime(a.acknowledged_at)}` : "—")},
        {label: "Resolved", cell: a => (a.resolved_at ? `${a.resolved_by} · ${fmtTime(a.resolved_at)}` : "—")},
      ], rows, {caption: `Alerts in room ${room}`, empty: "No alerts in this room."}));
    } catch (err) {
      historyOut.appendChild(notice(`Cannot load the history: ${err.message}`, "error"));
    }
  }

  historyForm.addEventListener("submit", ev => {
    ev.preventDefault();
    const room = roomField.input.value.trim();
    location.hash = `#/alerts${room ? `?room=${encodeURIComponent(room)}` : ""}`;
  });
  showResolved.input.addEventListener("change", draw);

  if (await loadAll()) {
    source = new EventSource(`/api/v1/alerts/stream${query({after: streamAfter})}`);
    source.addEventListener("open", () => { connection.textContent = "connected"; });
    source.addEventListener("error", () => { connection.textContent = "reconnecting…"; });
    source.addEventListener("message", onStreamMessage);
    for (const kind of ["alert", "update", "acknowledged", "resolved"]) source.addEventListener(kind, onStreamMessage);
  } else {
    await fallbackToEvents();
  }
  await showHistory(ctx.params.get("room"));
  return () => {
    if (source) source.close();
    if (poll) clearInterval(poll);
  };
}
