// Fleet overview: every device by site / ward / room with its state, health, privacy mode and system version;
// counts, filters and search. A room with a critical alert nobody has acknowledged yet is marked until someone does.
import {get} from "./api.js";
import {h, clear, field, fmtAgo, fmtNum, pageHeader, keepFocus} from "./ui.js";
import {onCriticalAlerts} from "./alert-banner.js";
import {alertLabel, relative, startedAt} from "./alert-text.js";
import {DISPLAY_STATES as STATES, displayState, reasonsInline, stateBadge, stateLegend, stateText,
  updatingDevices} from "./states.js";

export {stateBadge};  // page-enroll.js imports it from here
// How a device keeps images private, as its latest heartbeat said ("unknown": not reported, or never heard from).
const PRIVACY_TEXT = {"sensor-only": "Sensor only (no image reaches the computer)",
  "blackout-at-capture": "Blackout at capture"};
const PRIVACY_FILTERS = ["sensor-only", "blackout-at-capture", "unknown"];

// The system filter's value for devices that report no system version (an older agent, an image without a release
// file, never heard from): it cannot be a version, which starts with a letter or digit (wardsight.wire.Version).
export const SYSTEM_NOT_REPORTED = "(none)";

// The system image a device runs, as its latest heartbeat said: "<version> (slot <bootname>)", or "not reported".
export function systemText(system) {
  if (!system) return "not reported";
  return system.slot ? `${system.version} (slot ${system.slot})` : system.version;
}

export function privacyMode(mode) {
  return PRIVACY_TEXT[mode] ? mode : "unknown";
}

export function privacyText(mode) {
  return PRIVACY_TEXT[mode] || "not reported";
}

// When the device was last heard from: one source of truth, the server's presence record (what its display state
// comes from), else the arrival of its latest heartbeat; null: never (the server then says never_seen).
export function heardAt(d) {
  return d.last_heard_at ?? (d.health ? d.health.received_at : null) ?? null;
}

// Whether live readings are out of date: the server says offline, or it has been silent longer than the server's
// offline threshold (``offline_after_s`` of the overview) and the server has not noticed yet.
export function isSilent(d, now, offlineAfterS) {
  if (d.state === "offline") return true;
  const at = heardAt(d);
  return at !== null && offlineAfterS !== null && offlineAfterS !== undefined && now - at > offlineAfterS;
}

// A live reading (frame rate, temperature): itself, or for a silent device "—" with the last value greyed and its age.
export function liveReading(text, silent, at, now) {
  if (!silent || text === "—") return text;
  return h("span", {class: "live-stale"}, "— ", h("span", {class: "stale-value"}, `(${text}, ${fmtAgo(at, now)})`));
}

function modelVersions(health) {
  if (!health || !health.models) return "—";
  const entries = Object.entries(health.models);
  return entries.length ? entries.map(([k, v]) => `${k} ${v}`).join(", ") : "—";
}

function temperature(health) {
  if (!health) return "—";
  const parts = [];
  if (health.cpu_temp_c !== null && health.cpu_temp_c !== undefined) parts.push(`CPU ${fmtNum(health.cpu_temp_c, 0, " °C")}`);
  if (health.accelerator_temp_c !== null && health.accelerator_temp_c !== undefined) parts.push(`acc. ${fmtNum(health.accelerator_temp_c, 0, " °C")}`);
  return parts.length ? parts.join(", ") : "—";
}

function accelerator(health) {
  if (!health) return "—";
  const cfg = health.accelerator_configured;
  return cfg && cfg !== health.accelerator ? `${health.accelerator} (configured: ${cfg})` : health.accelerator;
}

// The room's cell: its name and, while it has unacknowledged critical alerts, a mark for each (label, how long ago).
function roomCell(room, alerts) {
  const cell = h("td", {}, room);
  for (const a of alerts || []) {
    cell.append(h("br"), h("a", {class: "room-alarm", href: `#/alerts?room=${encodeURIComponent(room)}`},
      `${alertLabel(a)}${a.count > 1 ? ` (${a.count})` : ""}, `, relative(startedAt(a))));
  }
  return cell;
}

export async function render(root, ctx) {
  const counts = h("ul", {class: "counts", "aria-label": "Device counts"});
  const search = field("Search (device, name, room)", "search", {placeholder: "e.g. 3B-12", autocomplete: "off"});
  const state = field("Status", "select", {}, [["", "any status"], ...STATES.map(s => [s, stateText(s)])]);
  const site = field("Site", "select", {}, [["", "all sites"]]);
  const ward = field("Ward", "select", {}, [["", "all wards"]]);
  const privacy = field("Privacy mode", "select", {}, [["", "any privacy mode"],
    ...PRIVACY_FILTERS.map(m => [m, privacyText(m)])]);
  const system = field("System version", "select", {}, [["", "any system version"]]);
  const filters = h("form", {class: "filters", role: "search", "aria-label": "Filter devices",
    onsubmit: ev => ev.preventDefault()}, search.wrap, state.wrap, site.wrap, ward.wrap, privacy.wrap, system.wrap);
  const shown = h("p", {class: "muted", "aria-live": "polite"});
  const tableEl = h("table", {class: "fleet"},
    h("caption", {class: "sr-only"}, "Devices grouped by site and ward"),
    h("thead", {}, h("tr", {}, ["Device", "Room", "Status", "Model version", "System", "Accelerator",
      "Privacy mode", "Frame rate", "Temperature", "Last heard"].map(t => h("th", {scope: "col"}, t)))));
  root.append(pageHeader("Fleet"), counts, stateLegend(), filters, shown, tableEl);

  let data = null;
  let updating = new Set();
  let alarms = new Map();  // room -> its open critical alerts
  const params = ctx.params;
  if (params.get("q")) search.input.value = params.get("q");
  if (params.get("state")) state.input.value = params.get("state");
  if (PRIVACY_FILTERS.includes(params.get("privacy_mode"))) privacy.input.value = params.get("privacy_mode");
  let systemWanted = params.get("system_version") || "";  // chosen before the versions are known (a link)

  // extra: [value, text] options after the values (e.g. "not reported").
  function fillSelect(select, values, allText, extra = []) {
    const current = select.value;
    clear(select);
    select.appendChild(h("option", {value: ""}, allText));
    for (const v of values) select.appendChild(h("option", {value: v}, v));
    for (const [v, t] of extra) select.appendChild(h("option", {value: v}, t));
    select.value = values.includes(current) || extra.some(([v]) => v === current) ? current : "";
  }

  // The versions the devices report, and the one chosen even when no device runs it (any more).
  function fillSystems(devices) {
    const chosen = systemWanted || system.input.value;
    systemWanted = "";
    const versions = new Set(devices.map(d => d.system && d.system.version).filter(Boolean));
    if (chosen && chosen !== SYSTEM_NOT_REPORTED) versions.add(chosen);
    const sorted = [...versions].sort((a, b) => a.localeCompare(b, undefined, {numeric: true}));
    fillSelect(system.input, sorted, "any system version", [[SYSTEM_NOT_REPORTED, "not reported"]]);
    system.input.value = chosen;
  }

  function systemPasses(d) {
    const wanted = system.input.value;
    if (!wanted) return true;
    return wanted === SYSTEM_NOT_REPORTED ? !d.system : Boolean(d.system) && d.system.version === wanted;
  }

  function draw() {
    if (!data) return;
    const devices = data.devices.map(d => ({...d, state: displayState(d, updating)}));
    const tally = Object.fromEntries(STATES.map(s => [s, 0]));
    for (const d of devices) tally[d.state] = (tally[d.state] || 0) + 1;
    clear(counts);
    counts.appendChild(h("li", {class: "count-total"}, h("strong", {}, String(devices.length)), " devices"));
    for (const s of STATES) {
      if (!tally[s] && !["online", "offline", "degraded"].includes(s)) continue;
      counts.appendChild(h("li", {class: `count-${s}`}, h("strong", {}, String(tally[s])), ` ${stateText(s)}`));
    }
    fillSelect(site.input, [...new Set(devices.map(d => d.site).filter(Boolean))].sort(), "all sites");
    fillSelect(ward.input, [...new Set(devices.map(d => d.ward).filter(Boolean))].sort(), "all wards");
    fillSystems(devices);
    const q = search.input.value.trim().toLowerCase();
    const picked = devices.filter(d =>
      (!state.input.value || d.state === state.input.value) &&
      (!site.input.value || d.site === site.input.value) &&
      (!ward.input.value || d.ward === ward.input.value) &&
      (!privacy.input.value || privacyMode(d.privacy_mode) === privacy.input.value) && systemPasses(d) &&
      (!q || [d.id, d.name, d.room, d.site, d.ward].some(v => v && String(v).toLowerCase().includes(q))));
    shown.textContent = `Showing ${picked.length} of ${devices.length} devices.`;
    for (const tb of tableEl.querySelectorAll("tbody")) tb.remove();
    if (!picked.length) {
      tableEl.appendChild(h("tbody", {}, h("tr", {}, h("td", {colSpan: 10, class: "empty"},
        devices.length ? "No device matches the filters." : "No devices enrolled yet."))));
      return;
    }
    const groups = new Map();
    for (const d of picked) {
      const key = `${d.site || "no site"} / ward ${d.ward || "—"}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(d);
    }
    for (const [key, list] of groups) {
      const tb = h("tbody", {}, h("tr", {class: "group"}, h("th", {colSpan: 10, scope: "rowgroup"}, key)));
      for (const d of list.sort((a, b) => (a.room || "").localeCompare(b.room || "") || a.id.localeCompare(b.id))) {
        const hl = d.health;
        const at = heardAt(d);
        const silent = isSilent(d, data.now, data.offline_after_s);
        let heard = fmtAgo(at, data.now);
        if (d.state === "offline" && d.offline_since) heard = `offline since ${fmtAgo(d.offline_since, data.now)}`;
        tb.appendChild(h("tr", {dataset: {device: d.id}, class: alarms.has(d.room) ? "alarm" : null},
          h("td", {}, h("a", {href: `#/devices/${encodeURIComponent(d.id)}`}, d.name || d.id), h("br"), h("span", {class: "muted mono"}, d.id)),
          roomCell(d.room, alarms.get(d.room)),
          h("td", {class: "state-cell"}, stateBadge(d.state), reasonsInline(d.state, hl)),
          h("td", {}, modelVersions(hl)),
          h("td", {class: "system"}, systemText(d.system)),
          h("td", {}, accelerator(hl)),
          h("td", {class: `privacy privacy-${privacyMode(d.privacy_mode)}`}, privacyText(d.privacy_mode)),
          h("td", {class: "fps"}, liveReading(hl ? fmtNum(hl.fps, 1, " fps") : "—", silent, at, data.now)),
          h("td", {class: "temp"}, liveReading(temperature(hl), silent, at, data.now)),
          h("td", {}, heard)));
      }
      tableEl.appendChild(tb);
    }
  }

  async function refresh() {
    try {
      [data, updating] = await Promise.all([get("/api/v1/fleet/overview"), updatingDevices()]);
      keepFocus(tableEl, draw);
    } catch (err) {
      if (!err.unreachable) ctx.setStatus(`Cannot load the fleet (${err.message}); retrying…`);  // else the banner says so
    }
  }
  for (const f of [search.input, state.input, site.input, ward.input, privacy.input, system.input]) {
    f.addEventListener("input", draw);
  }
  const unwatch = onCriticalAlerts(list => {
    alarms = new Map();
    for (const a of list) alarms.set(a.room, [...(alarms.get(a.room) || []), a]);
    keepFocus(tableEl, draw);
  });
  await refresh();
  const timer = setInterval(refresh, ctx.refreshMs);
  return () => { clearInterval(timer); unwatch(); };
}
