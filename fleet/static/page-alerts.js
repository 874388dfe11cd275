// Alerts: a live feed (server-sent events, no reload; polling when the server refuses the stream), acknowledge and
// resolve with who and when, per-room history. Each alert reads as a plain label ("Fall") in a room, from a camera
// by its name, with the time it arrived and how long ago; a room's repeated critical alerts are one alert with a
// count and the latest one (the server groups them).
import {can, get, getOptional, post, query} from "./api.js";
import {h, clear, field, pageHeader, badge, statusLine, unavailable, table, notice} from "./ui.js";
import {alertLabel, deviceText, describe, relative, startedAt, typeLabel, when} from "./alert-text.js";

const SEVERITY_RANK = {critical: 0, warning: 1, info: 2};
const FEED_LIMIT = 200;
const STREAM_RETRY_MS = 60000;

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

const lastSeen = a => a.last_seen_at ?? startedAt(a) ?? 0;
const byWhom = who => (who === "system" ? "the system" : who || "?");

function deviceLink(a) {
  return a.device_id ? h("a", {href: `#/devices/${encodeURIComponent(a.device_id)}`}, deviceText(a)) : deviceText(a);
}

// Who acknowledged or resolved it and when; a resolution by the system says why ("got up", "attended").
function stateLine(a) {
  const state = stateOf(a);
  // An open alert's badge says for how long ("open for 12 min").
  const label = state === "open" && startedAt(a) !== null ? relative(startedAt(a), "open", "") : state;
  const who = h("p", {class: "alert-who"}, badge(label, `state state-${state}`));
  if (a.acknowledged_at) who.append(` Acknowledged by ${a.acknowledged_by || "?"} at `, when(a.acknowledged_at), ".");
  if (a.resolved_at) {
    const why = a.resolved_by === "system" && a.note ? ` (${a.note})` : "";
    who.append(` Resolved by ${byWhom(a.resolved_by)}${why} at `, when(a.resolved_at), ".");
  }
  if (a.note && a.resolved_by !== "system") who.append(` Note: ${a.note}`);
  return who;
}

function groupLine(a) {
  if (!(a.count > 1)) return null;
  return h("p", {class: "alert-group"}, `${a.count} alerts from this room since it opened; latest: `,
    typeLabel(a.app, a.last_type), ", ", when(lastSeen(a)), ".");
}

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
  let retry = null;
  let cursor = null;  // the stream id to continue from (the list's stream_after, then each message's id)
  let closed = false;

  function alertItem(a) {
    const state = stateOf(a);
    const sev = a.severity || "info";
    const id = idOf(a);
    const li = h("li", {class: `alert sev-${sev} state-${state}`, dataset: {alertId: String(id), room: a.room || ""}});
    const head = h("p", {class: "alert-head"},
      badge(sev, `sev sev-${sev}`), " ",
      h("strong", {class: "alert-label"}, alertLabel(a)), " in room ",
      h("a", {href: `#/alerts?room=${encodeURIComponent(a.room || "")}`, "aria-label": `History of room ${a.room}`}, a.room || "?"),
      " · ", deviceLink(a), " · ", when(startedAt(a)));
    li.append(...[head, groupLine(a), stateLine(a)].filter(Boolean));
    if (can("operator") && state !== "resolved" && state !== "unacknowledgeable") {
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
      .sort((x, y) => lastSeen(y) - lastSeen(x) || (SEVERITY_RANK[x.severity] ?? 3) - (SEVERITY_RANK[y.severity] ?? 3))
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

  function upsert(a) {
    const id = idOf(a);
    if (id === undefined || id === null) return false;
    const known = alerts.has(String(id));
    alerts.set(String(id), {...(alerts.get(String(id)) || {}), ...a});
    return !known;
  }

  async function act(id, action) {
    try {
      const updated = await post(`/api/v1/alerts/${encodeURIComponent(id)}/${action}`, {});
      if (updated && typeof updated === "object") upsert(updated.alert || updated);
      report(`Alert ${action === "acknowledge" ? "acknowledged" : "resolved"}.`, "ok");
      draw();
    } catch (err) {
      report(`Could not ${action} the alert: ${err.message}`, "error");
    }
  }

  async function loadAll() {
    const data = await getOptional("/api/v1/alerts?limit=200");
    if (data === null) return false;
    for (const a of alertsOf(data)) upsert(a);
    if (data.stream_after !== undefined) cursor = data.stream_after;
    draw();
    return true;
  }

  function onStreamMessage(ev) {
    let data;
    try { data = JSON.parse(ev.data); } catch (_) { return; }
    if (ev.lastEventId) cursor = ev.lastEventId;
    if (data.kind === "ready") { connection.textContent = "connected"; return; }
    if (data.kind === "closed") { connection.textContent = `stopped: ${data.reason || "the server ended it"}`; return; }
    const items = Array.isArray(data) ? data : [data.alert || data];
    for (const a of items) {
      const isNew = upsert(a);
      if (data.kind === "grouped") {
        live.textContent = `Again: ${a.severity} ${typeLabel(a.app, a.last_type).toLowerCase()} in room ${a.room}` +
          ` (${a.count} alerts)`;
      } else if (isNew && (data.kind === "alert" || data.kind === undefined)) {
        live.textContent = `New ${describe(a)}`;
      }
    }
    draw();
  }

  // The server refused the stream (429: too many open for this session or account; 503: the server's are all in
  // use) or ended it: EventSource has closed for good, so poll, and try the stream again later.
  function startPolling() {
    if (poll || closed) return;
    connection.textContent = `polling every ${Math.round(ctx.refreshMs / 1000) || 1} s (the live stream is unavailable)`;
    poll = setInterval(async () => {
      try { await loadAll(); } catch (err) { report(`Cannot load the alerts: ${err.message}`, "error"); }
    }, ctx.refreshMs);
    retry = setTimeout(() => { retry = null; if (!source && !closed) connect(); }, STREAM_RETRY_MS);
  }

  function stopPolling() {
    if (poll) { clearInterval(poll); poll = null; }
    if (retry) { clearTimeout(retry); retry = null; }
  }

  function connect() {
    const es = new EventSource(`/api/v1/alerts/stream${query({after: cursor})}`);
    source = es;
    es.addEventListener("open", () => { connection.textContent = "connected"; stopPolling(); });
    es.addEventListener("error", () => {
      if (es.readyState !== EventSource.CLOSED) { connection.textContent = "reconnecting…"; return; }
      es.close();
      if (source === es) source = null;
      startPolling();
    });
    es.addEventListener("message", onStreamMessage);
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
            received_at: e.received_at, device_id: e.device_id, state: "unacknowledgeable"});
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
        {label: "Time", cell: a => when(startedAt(a))},
        {label: "Alert", cell: a => alertLabel(a)},
        {label: "Severity", cell: a => badge(a.severity || "info", `sev sev-${a.severity || "info"}`)},
        {label: "Camera", cell: a => deviceText(a)},
        {label: "Alerts", cell: a => (a.count > 1 ? `${a.count}, latest ${typeLabel(a.app, a.last_type)}` : "1")},
        {label: "State", cell: a => stateOf(a)},
        {label: "Acknowledged", cell: a => (a.acknowledged_at ? h("span", {}, `${a.acknowledged_by} · `, when(a.acknowledged_at)) : "—")},
        {label: "Resolved", cell: a => (a.resolved_at ? h("span", {}, `${a.resolved_by}${a.resolved_by === "system" && a.note ? ` (${a.note})` : ""} · `, when(a.resolved_at)) : "—")},
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

  if (await loadAll()) connect();
  else await fallbackToEvents();
  await showHistory(ctx.params.get("room"));
  return () => {
    closed = true;
    if (source) source.close();
    stopPolling();
  };
}
