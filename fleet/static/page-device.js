// Device detail: state and actions, the commissioning checks, health over time (small charts), the zone /
// privacy-region editor over the privacy-safe scene (boxes and skeletons on black), events, jobs and configuration.
import {can, get, getOptional, post, ApiError} from "./api.js";
import {h, clear, fmtTime, fmtAgo, fmtNum, pageHeader, statusLine, actionButton, table, notice,
  unavailable, badge} from "./ui.js";
import {lineChart} from "./canvas.js";
import {privacyText, systemText, heardAt, isSilent, liveReading} from "./page-fleet.js";
import {displayState, stateBadge, stateExplained, stateText, updatingDevices} from "./states.js";
import {batchStatus} from "./page-jobs.js";
import {commissioningPanel} from "./panel-commissioning.js";
import {buildZoneEditor} from "./zone-editor.js";
import {dataWords, typeLabel} from "./alert-text.js";

const CHARTS = [
  {key: "fps", title: "Frame rate", unit: " fps", color: "#1565c0", digits: 1},
  {key: "cpu_temp_c", title: "CPU temperature", unit: " °C", color: "#c62828", digits: 1},
  {key: "pose_ms", title: "Pose model time", unit: " ms", color: "#6a1b9a", digits: 1},
  {key: "mem_used_mb", title: "Memory used", unit: " MB", color: "#2e7d32", digits: 0},
];

function section(title, id, ...children) {
  return h("section", {"aria-labelledby": id, class: "card"}, h("h2", {id}, title), ...children);
}

// The fleet server cannot be reached (the shell's banner says so): not "Device not found"; the page loads once
// the server answers again.
function waitForServer(root, ctx, deviceId) {
  root.append(pageHeader(`Device ${deviceId}`),
    notice("The fleet server cannot be reached; this device's page loads when it is back.", "error"),
    h("p", {}, h("a", {href: "#/fleet"}, "Back to the fleet")));
  let inner = null;
  let stopped = false;
  const timer = setInterval(async () => {
    try { await get(`/api/v1/devices/${encodeURIComponent(deviceId)}`); } catch (err) {
      if (err instanceof ApiError && err.unreachable) return;
    }
    clearInterval(timer);
    if (stopped) return;
    clear(root);
    inner = await render(root, ctx);
    if (stopped && inner) inner();
  }, ctx.refreshMs);
  return () => { stopped = true; clearInterval(timer); if (inner) inner(); };
}

export async function render(root, ctx) {
  const deviceId = ctx.args[0];
  if (!deviceId) { location.hash = "#/fleet"; return null; }
  const {el: statusEl, report} = statusLine();
  let device;
  try {
    device = await get(`/api/v1/devices/${encodeURIComponent(deviceId)}`);
  } catch (err) {
    if (err instanceof ApiError && err.unreachable) return waitForServer(root, ctx, deviceId);
    const missing = err instanceof ApiError && err.status === 404;
    root.append(pageHeader(missing ? "Device not found" : `Device ${deviceId}`),
      notice(missing ? err.message : `This device failed to load: ${err.message}`, "error"),
      h("p", {}, h("a", {href: "#/fleet"}, "Back to the fleet")));
    return null;
  }
  const timers = [];
  const headBadge = h("span");
  const facts = h("dl", {class: "facts"});
  const actions = h("div", {class: "actions"});
  root.append(pageHeader(`Device ${device.name || device.id}`, headBadge), statusEl,
    h("p", {}, h("a", {href: "#/fleet"}, "← Fleet")), facts, actions);

  // ---- state and actions ------------------------------------------------------------------------------
  // overview: this device's row of the fleet overview (null until read, or right after an action); updating: the
  // devices a rollout step is in progress for. The state is the one the fleet page shows, in the same words.
  function drawFacts(dev, overview, updating = new Set()) {
    clear(facts);
    const add = (k, v) => facts.append(h("dt", {}, k), h("dd", {}, v ?? "—"));
    const state = overview ? displayState(overview, updating) : dev.status;
    add("Device id", dev.id);
    add("Site / ward / room", `${dev.site || "—"} / ${dev.ward || "—"} / ${dev.room}`);
    add("Enrolled", fmtTime(dev.enrolled_at));
    add("State", stateExplained(state, overview ? overview.health : null));
    add("Enrollment status", `${stateText(dev.status)}${dev.status_reason ? ` (${dev.status_reason})` : ""}${dev.status_changed_by ? `, by ${dev.status_changed_by} at ${fmtTime(dev.status_changed_at)}` : ""}`);
    add("Credential expires", fmtTime(dev.credential_expires_at));
    // As the latest heartbeat said (the overview is the fresher reading when there is one).
    add("Privacy mode", privacyText(overview ? overview.privacy_mode : dev.privacy_mode));
    const system = overview ? overview.system : dev.system;
    add("System", systemText(system));
    if (system && system.sbom_sha256) add("System SBOM (sha256)", h("span", {class: "mono"}, system.sbom_sha256));
    if (overview) add("Last heard", fmtAgo(heardAt(overview), overview.now));
    clear(headBadge).appendChild(stateBadge(state));
    clear(actions);
    const act = (label, path, role, confirmText) => {
      if (!can(role)) return;
      actions.appendChild(actionButton(label, async () => {
        device = await post(`/api/v1/devices/${encodeURIComponent(dev.id)}/${path}`, {});
        drawFacts(device, null);
        return `${label}: done.`;
      }, {report, confirmText}));
    };
    if (dev.status === "pending") act("Approve", "approve", "operator");
    if (dev.status === "pending" || dev.status === "active") act("Quarantine", "quarantine", "operator");
    if (dev.status === "quarantined") act("Release", "release", "operator");
    if (dev.status === "active") act("Reissue credential", "reissue", "admin");
    if (dev.status !== "revoked") act("Revoke", "revoke", "admin", `Revoke ${dev.id}? It must enroll again with a new token.`);
    if (!can("operator")) actions.appendChild(h("p", {class: "muted"}, "Read-only: device actions need the operator role."));
  }
  drawFacts(device, null);

  // ---- commissioning: ready for the ward? ----------------------------------------------------------------
  const commissioning = commissioningPanel(deviceId, {report, timers, refreshMs: ctx.refreshMs});
  root.appendChild(section("Commissioning", "commissioning-h", commissioning.el));
  await commissioning.refresh();

  // ---- health -----------------------------------------------------------------------------------------
  const latestEl = h("dl", {class: "facts"});
  const dropNote = h("p", {class: "muted frames-note"});  // what dropped frames mean (its text does not change)
  const charts = CHARTS.map(c => {
    const canvas = h("canvas", {class: "chart", width: 320, height: 120, role: "img", "aria-label": c.title});
    const summary = h("p", {class: "muted chart-summary"});
    return {...c, canvas, summary, fig: h("figure", {class: "chart-fig"}, h("figcaption", {}, c.title), canvas, summary)};
  });
  root.appendChild(section("Health", "health-h", latestEl, dropNote, h("div", {class: "charts"}, charts.map(c => c.fig))));

  async function refreshHealth() {
    try {
      const [data, overview, updating] = await Promise.all([
        get(`/api/v1/devices/${encodeURIComponent(deviceId)}/health`),
        get("/api/v1/fleet/overview").then(o => {
          const d = o.devices.find(x => x.id === deviceId);
          return d ? {...d, now: o.now, offline_after_s: o.offline_after_s} : null;
        }),
        updatingDevices(),
      ]);
      drawFacts(device, overview, updating);
      const l = data.latest;
      clear(latestEl);
      const add = (k, v) => latestEl.append(h("dt", {}, k), h("dd", {}, v));
      if (!l) { add("Latest heartbeat", "none yet"); }
      else {
        add("Agent", l.agent_version);
        add("Accelerator", l.accelerator_configured && l.accelerator_configured !== l.accelerator ? `${l.accelerator} (configured ${l.accelerator_configured})` : l.accelerator);
        add("Models", Object.entries(l.models || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "—");
        // Live readings: for a device not heard from lately, "—" with the last value greyed and its age.
        const silent = overview ? isSilent(overview, overview.now, overview.offline_after_s) : false;
        const live = text => liveReading(text, silent, l.received_at, overview ? overview.now : undefined);
        add("Frame rate", live(fmtNum(l.fps, 1, " fps")));
        add("Temperatures", live(`CPU ${fmtNum(l.cpu_temp_c, 0, " °C")}, accelerator ${fmtNum(l.accelerator_temp_c, 0, " °C")}`));
        add("Memory", `${fmtNum(l.mem_used_mb, 0)} of ${fmtNum(l.mem_total_mb, 0, " MB")}`);
        add("Frames analysed / dropped", `${l.frames_processed} / ${l.frames_dropped} since the agent started`);
        dropNote.textContent = "Dropping frames is normal (the camera delivers more than the apps analyse) while the frame" +
          ` rate stays at ${fmtNum(l.min_app_fps ?? 5, 0, " fps")} or more.`;
        add("Outbox", String(l.outbox_pending));
        add("Clock skew", fmtNum(l.clock_skew_s, 1, " s"));
        add("Warnings", (l.warnings || []).join(", ") || "none");
      }
      for (const c of charts) {
        const text = lineChart(c.canvas, data.samples.map(s => [s.received_at, s[c.key]]), c);
        c.summary.textContent = text;
        c.canvas.setAttribute("aria-label", `${c.title}: ${text}`);
      }
    } catch (err) {
      // Unreachable: keep the last readings (the shell's banner says so and greys them).
      if (!(err instanceof ApiError && (err.status === 401 || err.unreachable))) report(`Cannot load health: ${err.message}`, "error");
    }
  }
  await refreshHealth();
  timers.push(setInterval(refreshHealth, Math.max(ctx.refreshMs, 5000)));

  // ---- zone editor ------------------------------------------------------------------------------------
  const editor = buildZoneEditor(device, report, timers);
  root.appendChild(section("Zones and privacy regions", "zones-h", editor.el));
  await editor.load();

  // ---- events and jobs --------------------------------------------------------------------------------
  const eventsOut = h("div");
  const jobsOut = h("div");
  root.append(section("Recent events", "events-h", eventsOut), section("Jobs", "jobs-h", jobsOut));
  async function refreshLists() {
    try {
      const ev = await get("/api/v1/events?limit=500");
      const mine = ev.events.filter(e => e.device_id === deviceId).slice(0, 50);
      clear(eventsOut).appendChild(table([
        {label: "Time", cell: e => fmtTime(e.time)},
        {label: "Event", cell: e => typeLabel(e.app, e.type)},
        {label: "Severity", cell: e => badge(e.severity, `sev sev-${e.severity}`)},
        {label: "Details", cell: e => dataWords(e.data) || "—"},
      ], mine, {empty: "No events from this device among the latest 500."}));
    } catch (err) {
      if (!err.unreachable) clear(eventsOut).appendChild(notice(`Cannot load events: ${err.message}`, "error"));
    }
    try {
      const jobs = await getOptional("/api/v1/jobs?limit=100");
      if (jobs === null) { clear(jobsOut).appendChild(unavailable("Jobs", "GET /api/v1/jobs")); return; }
      const mine = jobs.batches.filter(b => {
        const t = b.target || {};
        if (t.device_ids) return t.device_ids.includes(deviceId);
        return (!t.site || t.site === device.site) && (!t.ward || t.ward === device.ward) && (!t.room || t.room === device.room) && !t.tags;
      });
      clear(jobsOut).appendChild(table([
        {label: "Batch", cell: b => h("a", {href: `#/jobs/${encodeURIComponent(b.batch_id)}`}, b.batch_id)},
        {label: "Kind", cell: b => b.kind},
        {label: "Created", cell: b => `${fmtTime(b.created_at)} by ${b.created_by}`},
        {label: "Status", cell: b => batchStatus(b)},
      ], mine, {empty: "No jobs for this device."}));
    } catch (err) {
      if (!err.unreachable) clear(jobsOut).appendChild(notice(`Cannot load jobs: ${err.message}`, "error"));
    }
  }
  await refreshLists();
  timers.push(setInterval(refreshLists, 10000));

  return () => { for (const t of timers) clearInterval(t); editor.stop(); };
}
