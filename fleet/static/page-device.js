// Device detail: state and actions, the commissioning checks, health over time (small charts), the zone /
// privacy-region editor over the privacy-safe scene (boxes and skeletons on black), events, jobs and configuration.
import {can, get, getOptional, post, ApiError} from "./api.js";
import {h, clear, field, fmtTime, fmtAgo, fmtNum, pageHeader, statusLine, actionButton, table, notice,
  unavailable, badge} from "./ui.js";
import {lineChart, drawScene, toFrame, ZONE_COLORS} from "./canvas.js";
import {readShapes, writeShapes} from "./toml.js";
import {stateBadge, privacyText} from "./page-fleet.js";
import {followBatch, batchStatus} from "./page-jobs.js";
import {commissioningPanel} from "./panel-commissioning.js";

const ZONE_KINDS = ["door", "dispenser", "bed", "floor", "room"];
const IDENT = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
const CHARTS = [
  {key: "fps", title: "Frame rate", unit: " fps", color: "#1565c0", digits: 1},
  {key: "cpu_temp_c", title: "CPU temperature", unit: " °C", color: "#c62828", digits: 1},
  {key: "pose_ms", title: "Pose model time", unit: " ms", color: "#6a1b9a", digits: 1},
  {key: "mem_used_mb", title: "Memory used", unit: " MB", color: "#2e7d32", digits: 0},
];

function section(title, id, ...children) {
  return h("section", {"aria-labelledby": id, class: "card"}, h("h2", {id}, title), ...children);
}

export async function render(root, ctx) {
  const deviceId = ctx.args[0];
  if (!deviceId) { location.hash = "#/fleet"; return null; }
  const {el: statusEl, report} = statusLine();
  let device;
  try {
    device = await get(`/api/v1/devices/${encodeURIComponent(deviceId)}`);
  } catch (err) {
    root.append(pageHeader("Device not found"), notice(err.message, "error"), h("p", {}, h("a", {href: "#/fleet"}, "Back to the fleet")));
    return null;
  }
  const timers = [];
  const headBadge = h("span");
  const facts = h("dl", {class: "facts"});
  const actions = h("div", {class: "actions"});
  root.append(pageHeader(`Device ${device.name || device.id}`, headBadge), statusEl,
    h("p", {}, h("a", {href: "#/fleet"}, "← Fleet")), facts, actions);

  // ---- state and actions ------------------------------------------------------------------------------
  function drawFacts(dev, overview) {
    clear(facts);
    const add = (k, v) => facts.append(h("dt", {}, k), h("dd", {}, v ?? "—"));
    add("Device id", dev.id);
    add("Site / ward / room", `${dev.site || "—"} / ${dev.ward || "—"} / ${dev.room}`);
    add("Enrolled", fmtTime(dev.enrolled_at));
    add("Status", `${dev.status}${dev.status_reason ? ` (${dev.status_reason})` : ""}${dev.status_changed_by ? `, by ${dev.status_changed_by} at ${fmtTime(dev.status_changed_at)}` : ""}`);
    add("Credential expires", fmtTime(dev.credential_expires_at));
    // As the latest heartbeat said (the overview is the fresher reading when there is one).
    add("Privacy mode", privacyText(overview ? overview.privacy_mode : dev.privacy_mode));
    if (overview) add("Last heard", fmtAgo(overview.last_heard_at, overview.now));
    clear(headBadge).appendChild(stateBadge(overview ? overview.state : dev.status));
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
  const charts = CHARTS.map(c => {
    const canvas = h("canvas", {class: "chart", width: 320, height: 120, role: "img", "aria-label": c.title});
    const summary = h("p", {class: "muted chart-summary"});
    return {...c, canvas, summary, fig: h("figure", {class: "chart-fig"}, h("figcaption", {}, c.title), canvas, summary)};
  });
  root.appendChild(section("Health", "health-h", latestEl, h("div", {class: "charts"}, charts.map(c => c.fig))));

  async function refreshHealth() {
    try {
      const [data, overview] = await Promise.all([
        get(`/api/v1/devices/${encodeURIComponent(deviceId)}/health`),
        get("/api/v1/fleet/overview").then(o => {
          const d = o.devices.find(x => x.id === deviceId);
          return d ? {...d, now: o.now} : null;
        }),
      ]);
      drawFacts(device, overview);
      const l = data.latest;
      clear(latestEl);
      const add = (k, v) => latestEl.append(h("dt", {}, k), h("dd", {}, v));
      if (!l) { add("Latest heartbeat", "none yet"); }
      else {
        add("Agent", l.agent_version);
        add("Accelerator", l.accelerator_configured && l.accelerator_configured !== l.accelerator ? `${l.accelerator} (configured ${l.accelerator_configured})` : l.accelerator);
        add("Models", Object.entries(l.models || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "—");
        add("Frame rate", fmtNum(l.fps, 1, " fps"));
        add("Temperatures", `CPU ${fmtNum(l.cpu_temp_c, 0, " °C")}, accelerator ${fmtNum(l.accelerator_temp_c, 0, " °C")}`);
        add("Memory", `${fmtNum(l.mem_used_mb, 0)} of ${fmtNum(l.mem_total_mb, 0, " MB")}`);
        add("Frames dropped", `${l.frames_dropped} of ${l.frames_processed}`);
        add("Outbox", String(l.outbox_pending));
        add("Clock skew", fmtNum(l.clock_skew_s, 1, " s"));
        add("Problems", (l.degraded || []).join(", ") || "none");
      }
      for (const c of charts) {
        const text = lineChart(c.canvas, data.samples.map(s => [s.received_at, s[c.key]]), c);
        c.summary.textContent = text;
        c.canvas.setAttribute("aria-label", `${c.title}: ${text}`);
      }
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) report(`Cannot load health: ${err.message}`, "error");
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
        {label: "App", cell: e => e.app},
        {label: "Event", cell: e => e.type},
        {label: "Severity", cell: e => badge(e.severity, `sev sev-${e.severity}`)},
        {label: "Details", cell: e => Object.entries(e.data || {}).map(([k, v]) => `${k}=${v}`).join(", ")},
      ], mine, {empty: "No events from this device among the latest 500."}));
    } catch (err) { clear(eventsOut).appendChild(notice(`Cannot load events: ${err.message}`, "error")); }
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
    } catch (err) { clear(jobsOut).appendChild(notice(`Cannot load jobs: ${err.message}`, "error")); }
  }
  await refreshLists();
  timers.push(setInterval(refreshLists, 10000));

  return () => { for (const t of timers) clearInterval(t); editor.stop(); };
}

// ---- the zone / privacy-region editor -----------------------------------------------------------------

function buildZoneEditor(device, report, timers) {
  const state = {zones: [], privacy: [], rest: "", draft: null, selected: null, scene: null, frameSize: null};
  const canvas = h("canvas", {class: "scene", width: 640, height: 360, tabIndex: 0, role: "img",
    "aria-label": "Privacy-safe view of the room: people as boxes and skeletons on black, with zones and privacy regions"});
  const sceneNote = h("p", {class: "muted", "aria-live": "polite"});
  const shapesList = h("ul", {class: "shapes", "aria-label": "Zones and privacy regions"});
  const editable = can("operator");

  // New shape controls.
  const layer = field("Shape type", "select", {}, [["zone", "Zone"], ["privacy", "Privacy region (blacked out at capture)"]]);
  const name = field("Shape name", "text", {autocomplete: "off", placeholder: "e.g. door-1"});
  const kind = field("Zone kind", "select", {}, ZONE_KINDS.map(k => [k, k]));
  const px = field("Point x (0 to 1)", "number", {min: 0, max: 1, step: 0.01, value: "0.5"});
  const py = field("Point y (0 to 1)", "number", {min: 0, max: 1, step: 0.01, value: "0.5"});
  const draftInfo = h("p", {class: "muted", "aria-live": "polite"}, "Not drawing.");
  const startBtn = h("button", {type: "button"}, "Start a new shape");
  const addPointBtn = h("button", {type: "button", disabled: true}, "Add point");
  const undoBtn = h("button", {type: "button", disabled: true}, "Undo last point");
  const finishBtn = h("button", {type: "button", disabled: true}, "Finish shape");
  const cancelBtn = h("button", {type: "button", disabled: true}, "Cancel shape");
  const configText = field("device.toml sent with the zones (the shapes are written into it on save)", "textarea",
    {rows: 8, spellcheck: "false", class: "mono"});
  const configNote = h("p", {class: "muted"});
  const saveBtn = h("button", {type: "button", class: "primary"}, "Save as configuration job");
  const jobOut = h("div", {class: "job-follow", "aria-live": "polite"});

  layer.input.addEventListener("change", () => { kind.wrap.hidden = layer.input.value !== "zone"; });

  function redraw() {
    drawScene(canvas, {scene: state.scene, zones: state.zones, privacy: state.privacy, draft: state.draft,
      selected: state.selected, frameSize: state.frameSize});
    clear(shapesList);
    const item = (layerName, list, i, s) => {
      const label = layerName === "zone" ? `Zone ${s.name} (${s.kind})` : `Privacy region ${s.name}`;
      const li = h("li", {}, h("span", {class: "swatch", dataset: {kind: layerName === "zone" ? s.kind : "privacy"}}),
        ` ${label}, ${s.polygon.length} points `);
      li.appendChild(h("button", {type: "button", "aria-pressed": String(!!(state.selected && state.selected.layer === layerName && state.selected.index === i)),
        onclick: () => { state.selected = {layer: layerName, index: i}; redraw(); }}, "Highlight"));
      if (editable) {
        li.appendChild(h("button", {type: "button", "aria-label": `Delete ${label}`, onclick: () => {
          list.splice(i, 1); state.selected = null; redraw(); report(`${label} deleted (not saved yet).`, "info");
        }}, "Delete"));
      }
      shapesList.appendChild(li);
    };
    state.privacy.forEach((s, i) => item("privacy", state.privacy, i, s));
    state.zones.forEach((s, i) => item("zone", state.zones, i, s));
    if (!state.zones.length && !state.privacy.length) shapesList.appendChild(h("li", {class: "empty"}, "No zones or privacy regions yet."));
    const drawing = state.draft !== null;
    startBtn.disabled = drawing || !editable;
    for (const b of [addPointBtn, cancelBtn]) b.disabled = !drawing;
    undoBtn.disabled = !drawing || !state.draft.points.length;
    finishBtn.disabled = !drawing || state.draft.points.length < 3;
    draftInfo.textContent = drawing
      ? `Drawing ${state.draft.layer === "zone" ? "zone" : "privacy region"} ${state.draft.name}: ${state.draft.points.length} points (click the view or use the point fields; at least 3).`
      : "Not drawing.";
  }

  function addPoint(p) {
    if (!state.draft || !p) return;
    if (state.draft.points.length >= 64) { report("A shape has at most 64 points.", "error"); return; }
    state.draft.points.push(p);
    redraw();
  }

  startBtn.addEventListener("click", () => {
    const n = name.input.value.trim();
    const isZone = layer.input.value === "zone";
    if (!n) { report("Give the shape a name first.", "error"); name.input.focus(); return; }
    if (isZone && !IDENT.test(n)) { report("A zone name is letters, digits and _ . : - (starting with a letter or digit).", "error"); name.input.focus(); return; }
    const taken = (isZone ? state.zones : state.privacy).some(s => s.name === n);
    if (taken) { report(`There is already a ${isZone ? "zone" : "privacy region"} named ${n}.`, "error"); return; }
    state.draft = {layer: layer.input.value, name: n, kind: kind.input.value, points: []};
    redraw();
    canvas.focus();
  });
  addPointBtn.addEventListener("click", () => {
    const x = Number(px.input.value), y = Number(py.input.value);
    if (!(x >= 0 && x <= 1 && y >= 0 && y <= 1)) { report("Point coordinates are between 0 and 1.", "error"); return; }
    addPoint([Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000]);
  });
  undoBtn.addEventListener("click", () => { if (state.draft) { state.draft.points.pop(); redraw(); } });
  cancelBtn.addEventListener("click", () => { state.draft = null; redraw(); });
  finishBtn.addEventListener("click", () => {
    const d = state.draft;
    if (!d || d.points.length < 3) return;
    if (d.layer === "zone") state.zones.push({name: d.name, kind: d.kind, polygon: d.points});
    else state.privacy.push({name: d.name, polygon: d.points});
    state.draft = null;
    name.input.value = "";
    redraw();
    report(`Shape ${d.name} added (not saved yet: save it as a configuration job).`, "info");
  });
  canvas.addEventListener("click", ev => { if (state.draft) addPoint(toFrame(canvas, ev, state.frameSize)); });

  saveBtn.addEventListener("click", async () => {
    if (state.draft) { report("Finish or cancel the shape being drawn first.", "error"); return; }
    const text = writeShapes(readShapes(configText.input.value).rest, state.zones, state.privacy);
    configText.input.value = text;
    saveBtn.disabled = true;
    try {
      const made = await post("/api/v1/jobs", {kind: "push_config", config: text, target: {device_ids: [device.id]},
        expires_in_s: 3600});
      report(`Configuration job ${made.batch_id} started.`, "ok");
      followBatch(made.batch_id, jobOut, timers);
    } catch (err) {
      report(err instanceof ApiError && err.routeMissing ? "Jobs are not available on this server yet (POST /api/v1/jobs)." : `Saving failed: ${err.message}`, "error");
    } finally {
      saveBtn.disabled = false;
    }
  });

  const legend = h("ul", {class: "legend", "aria-label": "Colours"},
    ...Object.entries(ZONE_COLORS).map(([k]) => h("li", {}, h("span", {class: "swatch", dataset: {kind: k}}), ` ${k}`)),
    h("li", {}, h("span", {class: "swatch", dataset: {kind: "person"}}), " person (box and skeleton)"));
  const controls = editable
    ? h("fieldset", {class: "shape-controls"}, h("legend", {}, "Draw a shape"),
      layer.wrap, name.wrap, kind.wrap, startBtn, draftInfo,
      h("div", {class: "point-row"}, px.wrap, py.wrap, addPointBtn), undoBtn, finishBtn, cancelBtn)
    : notice("Read-only: editing zones needs the operator role.");
  const el = h("div", {class: "zone-editor"},
    h("div", {class: "scene-wrap"}, canvas, sceneNote, legend),
    h("div", {class: "zone-side"}, shapesList, controls),
    editable ? h("details", {class: "config-details"}, h("summary", {}, "Configuration text"), configNote, configText.wrap) : null,
    editable ? h("p", {}, saveBtn) : null, jobOut);

  let sceneMissing = false;
  let layout = null;  // the zones and privacy regions the device itself reports (scene API)
  async function refreshScene() {
    if (sceneMissing) return;
    try {
      const data = await getOptional(`/api/v1/devices/${encodeURIComponent(device.id)}/scene`);
      if (data === null) {
        sceneMissing = true;
        sceneNote.replaceChildren(unavailable("Live skeleton view", "GET /api/v1/devices/{id}/scene"));
        redraw();
        return;
      }
      // The snapshot at the top level ("live") or under "snapshot": accept both shapes.
      const snap = data.snapshot !== undefined ? data.snapshot : (data.live ? data : null);
      if (data.zones || data.privacy_regions) layout = {zones: data.zones, privacy: data.privacy_regions};
      state.scene = snap;
      if (snap) state.frameSize = snap.frame_size || [snap.frame_width, snap.frame_height];
      if (!snap) {
        sceneNote.textContent = "Waiting for the device's live view (it sends one every few seconds while this page is open).";
      } else {
        const n = (snap.people || []).length;
        sceneNote.textContent = `${n} ${n === 1 ? "person" : "people"} in view (${snap.frame_width}×${snap.frame_height}), ${Math.round(data.age_seconds ?? 0)} s old.`;
      }
      redraw();
    } catch (err) {
      state.scene = null;
      if (err instanceof ApiError && err.status === 403) { sceneMissing = true; sceneNote.textContent = "The live view needs the operator role."; }
      else sceneNote.textContent = `No live view: ${err.message}`;
      redraw();
    }
  }

  async function load() {
    let base = "";
    if (editable) {
      try {
        const cfg = await get(`/api/v1/devices/${encodeURIComponent(device.id)}/config`);
        if (cfg.config) {
          base = cfg.config;
          configNote.textContent = `The configuration last pushed by job ${cfg.batch_id} (${cfg.state}, ${fmtTime(cfg.pushed_at)}).`;
        } else {
          base = `# device.toml for ${device.id}: the zones and privacy regions below are written by the editor\nname = ${JSON.stringify(device.name || device.id)}\n`;
          configNote.textContent = "No configuration was pushed to this device from the console yet: this text replaces its device.toml, so add its other settings (source, apps) before saving.";
        }
      } catch (err) {
        configNote.textContent = `The last configuration could not be loaded (${err.message}).`;
      }
    }
    const parsed = readShapes(base);
    state.zones = parsed.zones.filter(z => z.name && z.polygon);
    state.privacy = parsed.privacy.filter(z => z.name && z.polygon);
    configText.input.value = base;
    await refreshScene();
    if (!state.zones.length && !state.privacy.length && layout) {
      // Nothing pushed from here yet: start from what the device reports it runs with.
      state.zones = (layout.zones || []).map(z => ({name: z.name, kind: z.kind, polygon: z.polygon.map(p => [...p])}));
      state.privacy = (layout.privacy || []).map((r, i) => ({name: `privacy-${i + 1}`, polygon: r.polygon.map(p => [...p])}));
      if (state.zones.length || state.privacy.length) configNote.textContent += " The shapes shown are the ones the device reports.";
    }
    const src = base.match(/^\s*size\s*=\s*\[\s*(\d+)\s*,\s*(\d+)\s*\]/m);
    if (src) state.frameSize = [Number(src[1]), Number(src[2])];
    redraw();
    timers.push(setInterval(refreshScene, 1000));
  }

  return {el, load, stop: () => {}};
}
