// Models and rollouts: the model library (upload), start a rollout of a version picked from the library (a staged,
// unsigned one says it needs signing and how), pause / resume / abort / roll back, and each rollout's progress per
// group and per device in words (rollout-steps.js).
import {can, get, getOptional, post, session, ApiError} from "./api.js";
import {h, clear, field, fmtTime, pageHeader, statusLine, actionButton, table, notice, unavailable, badge, keepFocus} from "./ui.js";
import {actorWords, countsText, deviceCell, deviceStep, stateCell, stepCell, whyCell} from "./rollout-steps.js";

const COMMANDS = {
  running: [["pause", "Pause"], ["abort", "Abort"], ["rollback", "Roll back"]],
  paused: [["resume", "Resume"], ["abort", "Abort"], ["rollback", "Roll back"]],
  stopped: [["resume", "Resume"], ["rollback", "Roll back"]],
  completed: [["rollback", "Roll back"]],
  aborted: [["rollback", "Roll back"]],
};
const DONE_STATES = ["healthy"];
const BAD_STATES = ["failed", "rejected", "rolled_back", "canceled"];
const DETAILED = 10;  // the newest rollouts whose devices are listed, each with why it is where it is

function groupProgress(r, g) {
  const counts = g.counts || {};
  const healthy = DONE_STATES.reduce((n, s) => n + (counts[s] || 0), 0);
  const bad = BAD_STATES.reduce((n, s) => n + (counts[s] || 0), 0);
  const detail = countsText(counts) || "no devices reporting";
  return h("li", {class: "group-progress", dataset: {group: String(g.group)}},
    h("span", {class: "group-label"}, `Group ${g.group} (${g.size} device${g.size === 1 ? "" : "s"}, needs ${g.needed}): `),
    h("progress", {max: g.size || 1, value: healthy, "aria-label": `Rollout ${r.id} group ${g.group}: ${healthy} of ${g.size} healthy`}),
    ` ${healthy}/${g.size} healthy`, bad ? `, ${bad} failed or withdrawn` : "",
    h("span", {class: "muted"}, ` · ${g.started ? (g.succeeded ? "succeeded" : "started") : "waiting"} · ${detail}`));
}

// Each device of a rollout: whether it is updating, its step in words with the reason it sent, and why it is there
// and what happens next (the server's explanation).
// `names`: device id -> {name, room} from the fleet overview.
function deviceTable(r, names) {
  const steps = new Map((r.devices || []).map(d => [d.device_id, deviceStep(d, r.version)]));
  const columns = [
    {label: "Device", cell: d => deviceCell(d.device_id, names.get(d.device_id))},
    {label: "Group", cell: d => String(d.group)},
    {label: "State", cell: d => stateCell(steps.get(d.device_id), d.status)},
    {label: "Progress", cell: d => stepCell(steps.get(d.device_id))},
    {label: "Why / next", cell: d => whyCell(d, steps.get(d.device_id))},
    {label: "Last report", cell: d => d.last_report_at ? fmtTime(d.last_report_at) : "—"},
  ];
  return table(columns, r.devices || [], {caption: `Devices of rollout ${r.id}`, empty: "No devices.",
    rowClass: d => (steps.get(d.device_id).updating ? "updating" : "")});
}

function updatingCount(detail) {
  const n = detail ? (detail.devices || []).filter(d => deviceStep(d, detail.version).updating).length : 0;
  return n ? ` · ${n} device${n === 1 ? "" : "s"} updating` : "";
}

// Device id -> {name, room}, from the fleet overview (empty when it cannot be read: the ids are shown then).
async function deviceNames() {
  const data = await get("/api/v1/fleet/overview").catch(() => null);
  return new Map(((data && data.devices) || []).map(d => [d.id, {name: d.name, room: d.room}]));
}

async function upload(file) {
  const resp = await fetch("/api/v1/models", {method: "POST", credentials: "same-origin", body: file,
    headers: {"Content-Type": "application/octet-stream", "X-CSRF-Token": session.csrf || ""}});
  const type = resp.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await resp.json() : {};
  if (!resp.ok) throw new ApiError(resp.status, body.error || `HTTP ${resp.status}`, !type.includes("json"));
  return body;
}

export async function render(root, ctx) {
  const {el: statusEl, report} = statusLine();
  root.append(pageHeader("Models and rollouts"), statusEl);
  const libraryOut = h("div");
  const rolloutsOut = h("div");
  const timers = [];

  // ---- library ----------------------------------------------------------------------------------------
  root.appendChild(h("section", {class: "card", "aria-labelledby": "lib-h"}, h("h2", {id: "lib-h"}, "Model library"), libraryOut));
  let models = [];
  let refillForm = () => {};
  async function refreshLibrary() {
    const data = await getOptional("/api/v1/models").catch(err => { report(`Cannot load the library: ${err.message}`, "error"); return undefined; });
    if (data === undefined) return;
    if (data === null) { clear(libraryOut).appendChild(unavailable("Model library", "GET /api/v1/models")); return; }
    models = data.models || [];
    const rows = [];
    for (const m of models) {
      for (const v of m.versions || []) rows.push({...v, name: m.name, task: m.task});
      for (const [version, run] of Object.entries(m.running || {})) {
        if (!(m.versions || []).some(v => v.version === version)) rows.push({name: m.name, version, status: "running (not in the library)", devices: run.devices});
      }
    }
    // System bundles (RAUC, for a board's compatible) beside the models: the same staged / published lifecycle.
    for (const s of data.systems || []) {
      for (const v of s.versions || []) rows.push({...v, name: s.compatible, kind: "system", builds: [{backend: "RAUC bundle", runtime: "system"}]});
    }
    keepFocus(libraryOut, () => clear(libraryOut).appendChild(table([
      {label: "Kind", cell: v => v.kind === "system" ? "system" : "model"},
      {label: "Model", cell: v => v.name},
      {label: "Version", cell: v => v.version},
      {label: "Status", cell: v => [badge(v.status, `lib lib-${String(v.status).split(" ")[0]}`),
        v.status === "staged" ? h("span", {class: "muted"}, " needs signing") : null]},
      {label: "Builds", cell: v => (v.builds || []).map(b => `${b.backend}/${b.runtime}${b.hardware ? ` (${b.hardware})` : ""}`).join(", ") || "—"},
      {label: "License", cell: v => v.license || "—"},
      {label: "Devices running it", cell: v => String(v.devices ?? 0)},
      {label: "Uploaded", cell: v => (v.uploaded_at ? `${fmtTime(v.uploaded_at)} by ${actorWords(v.uploaded_by, v.uploaded_by_name)}` : "—")},
    ], rows, {empty: "The library is empty."})));
    refillForm();
  }
  await refreshLibrary();
  if (can("operator")) {
    const file = field("Model package (.wsm)", "file", {accept: ".wsm,application/octet-stream"});
    const form = h("form", {class: "inline-form", "aria-label": "Upload a model package"}, file.wrap,
      h("button", {type: "submit"}, "Upload"));
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      const f = file.input.files[0];
      if (!f) { report("Choose a model package first.", "error"); return; }
      try {
        const got = await upload(f);
        report(got.status === "staged"
          ? `${got.name} ${got.version} uploaded (staged). It needs signing with the offline targets key before it can be rolled out: ${signingCommand(got.name, got.version)}`
          : `${got.name} ${got.version} uploaded (${got.status}).`, "ok");
        await refreshLibrary();
      } catch (err) {
        report(err.routeMissing ? "Uploading is not available on this server yet (POST /api/v1/models)." : `Upload refused: ${err.message}`, "error");
      }
    });
    libraryOut.after(form);
  }

  // ---- start a rollout (operator) ---------------------------------------------------------------------
  if (can("operator")) root.appendChild(rolloutForm(() => models, report, () => refreshRollouts()));
  refillForm = () => root.querySelector("form.start-rollout")?.refill();

  // ---- rollouts -----------------------------------------------------------------------------------------
  root.appendChild(h("section", {class: "card", "aria-labelledby": "rollouts-h"}, h("h2", {id: "rollouts-h"}, "Rollouts"), rolloutsOut));
  async function refreshRollouts() {
    let data;
    try { data = await getOptional("/api/v1/rollouts"); } catch (err) { report(`Cannot load rollouts: ${err.message}`, "error"); return; }
    if (data === null) { clear(rolloutsOut).appendChild(unavailable("Rollouts", "GET /api/v1/rollouts")); return; }
    const list = data.rollouts || [];
    const [details, names] = await Promise.all([Promise.all(list.slice(0, DETAILED).map(
      r => get(`/api/v1/rollouts/${encodeURIComponent(r.id)}`).catch(() => null))), deviceNames()]);
    keepFocus(rolloutsOut, () => {
      clear(rolloutsOut);
      if (!list.length) { rolloutsOut.appendChild(h("p", {class: "empty"}, "No rollouts yet.")); return; }
      for (const [i, r] of list.entries()) {
        const detail = i < DETAILED ? details[i] : null;
        const buttons = can("operator") ? (COMMANDS[r.status] || []).map(([cmd, label]) => actionButton(label, async () => {
          await post(`/api/v1/rollouts/${encodeURIComponent(r.id)}/${cmd}`, {});
          await refreshRollouts();
          return `Rollout ${r.id}: ${label.toLowerCase()} done.`;
        }, {report, ariaLabel: `${label} rollout ${r.id}`,
          confirmText: cmd === "abort" || cmd === "rollback" ? `${label} rollout ${r.id}?` : null})) : [];
        rolloutsOut.appendChild(h("article", {class: "rollout", "aria-labelledby": `ro-${r.id}`, dataset: {rollout: r.id, status: r.status}},
          h("h3", {id: `ro-${r.id}`}, r.kind === "system" ? `System ${r.version} for ${r.model} ` : `${r.model} ${r.version} `,
            badge(r.kind === "system" ? "system" : "model", `kind kind-${r.kind || "model"}`), " ", badge(r.status, `ro ro-${r.status}`)),
          h("p", {class: "muted"}, `${r.id} · ${r.devices_total} device(s) · current group ${r.current_group ?? "—"} · ${r.failures} failure(s)`,
            updatingCount(detail), ` · started ${fmtTime(r.created_at)} by ${actorWords(r.created_by)}`, r.reason ? ` · ${r.reason}` : ""),
          h("ul", {class: "groups"}, (r.groups || []).map(g => groupProgress(r, g))),
          detail ? deviceTable(detail, names) : null,
          buttons.length ? h("p", {class: "actions"}, buttons) : null));
      }
    });
  }
  await refreshRollouts();
  if (!can("operator")) root.appendChild(notice("Read-only: uploading models and steering rollouts need the operator role."));
  timers.push(setInterval(refreshRollouts, Math.max(ctx.refreshMs, 3000)));
  return () => { for (const t of timers) clearInterval(t); };
}

// ---- the start-a-rollout form ---------------------------------------------------------------------------
const PACKAGE_VERSION = /^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$/;  // wardsight.modelpkg.VERSION
const VERSION_STATUS = {published: "published", staged: "staged: not signed yet", withdrawn: "withdrawn"};

// The command that signs and publishes a staged version (`wardsight ota publish`, with its real flags).
export function signingCommand(model, version) {
  return `wardsight ota publish <the ${model} ${version} .wsm file> --keys <the offline keys directory>` +
    ` --server ${location.origin} --ca <the fleet CA file>`;
}

function options(select, entries, placeholder) {
  const keep = select.value;
  select.replaceChildren(h("option", {value: ""}, placeholder), ...entries.map(([v, t]) => h("option", {value: v}, t)));
  select.value = entries.some(([v]) => v === keep) ? keep : "";
}

// What the chosen versions mean before anything is sent: a staged version needs signing (with the command), a
// withdrawn one cannot be offered, a previous version that is no package (the agent's built-in model) cannot be
// rolled back to over the air. Returns the blocking message, if any.
function versionHint(hint, m, version, previous) {
  clear(hint);
  const v = m && (m.versions || []).find(x => x.version === version);
  let blocking = null;
  if (v && v.status === "staged") {
    blocking = `${m.name} ${version} is staged: uploaded but not signed. Devices install only signed versions, so it needs signing first.`;
    hint.append(h("p", {}, blocking, " Sign and publish it on the offline signing machine with:"),
      h("pre", {class: "command"}, h("code", {}, signingCommand(m.name, version))));
  } else if (v && v.status === "withdrawn") {
    blocking = `${m.name} ${version} was withdrawn: devices will not install it. Publish it again or choose another version.`;
    hint.append(h("p", {}, blocking));
  }
  if (previous && !PACKAGE_VERSION.test(previous)) {
    hint.append(h("p", {}, `${previous} is the model built into the agent, not a package in the library: a roll back ` +
      "switches each device back to its built-in model (nothing is downloaded; the device restarts once)."));
  }
  hint.hidden = !hint.childNodes.length;
  return blocking;
}

function rolloutForm(getModels, report, refreshRollouts) {
  const model = field("Model", "select", {required: true});
  const version = field("Version", "select", {required: true});
  const previous = field("Previous version (for roll back, optional)", "select");
  const site = field("Site (optional)", "text", {autocomplete: "off"});
  const ward = field("Ward (optional)", "text", {autocomplete: "off"});
  const room = field("Room (optional)", "text", {autocomplete: "off"});
  const system = field("Devices on system version (optional)", "text", {autocomplete: "off", placeholder: "e.g. 2026.12.1"});
  const groups = field("Groups (comma separated: a count, or a percent of the selection)", "text", {value: "1, 100%", required: true});
  const success = field("Success threshold per group (%)", "number", {min: 1, max: 100, value: "100"});
  const errors = field("Stop after more than this many failures", "number", {min: 0, value: "0"});
  const timeout = field("Step timeout (minutes)", "number", {min: 1, max: 10080, value: "30"});
  const hint = h("div", {class: "version-hint", role: "status", "aria-live": "polite", hidden: true});
  const chosen = () => getModels().find(m => m.name === model.input.value);
  const update = () => {
    const m = chosen();
    options(version.input, (m ? m.versions || [] : []).map(v => [v.version, `${v.version} (${VERSION_STATUS[v.status] || v.status})`]),
      !m ? "Choose a model first" : (m.versions || []).length ? "Choose a version" : "No version of it in the library");
    const inLibrary = (m ? m.versions || [] : []).filter(v => v.version !== version.input.value && v.status === "published")
      .map(v => [v.version, `${v.version} (${VERSION_STATUS[v.status] || v.status})`]);
    const running = Object.entries((m && m.running) || {}).filter(([ver]) => ver !== version.input.value && !inLibrary.some(([x]) => x === ver))
      .map(([ver, run]) => [ver, `${ver} (runs on ${run.devices} device${run.devices === 1 ? "" : "s"}, not in the library)`]);
    options(previous.input, [...inLibrary, ...running], "None: each device's own previous version");
    version.input.disabled = !m;
    return versionHint(hint, m, version.input.value, previous.input.value);
  };
  const refill = () => {
    options(model.input, getModels().map(m => [m.name, m.task ? `${m.name} (${m.task})` : m.name]), "Choose a model");
    update();
  };
  for (const f of [model, version, previous]) f.input.addEventListener("change", update);
  const form = h("form", {class: "card start-rollout", "aria-labelledby": "start-rollout-h"},
    h("h2", {id: "start-rollout-h"}, "Start a rollout"),
    h("div", {class: "row"}, model.wrap, version.wrap, previous.wrap), hint,
    h("div", {class: "row"}, site.wrap, ward.wrap, room.wrap, system.wrap),
    h("div", {class: "row"}, groups.wrap, success.wrap, errors.wrap, timeout.wrap),
    h("button", {type: "submit", class: "primary"}, "Start the rollout"));
  form.refill = refill;
  refill();
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const blocking = update();
    if (blocking) { report(blocking, "error"); version.input.focus(); return; }
    const parsed = groups.input.value.split(",").map(s => s.trim()).filter(Boolean).map(s =>
      (s.endsWith("%") ? {percent: Number(s.slice(0, -1))} : {count: Number(s)}));
    if (!parsed.length || parsed.some(g => Object.values(g).some(v => !Number.isFinite(v) || v <= 0))) {
      report("Groups are counts (e.g. 2) or percents (e.g. 50%), separated by commas.", "error");
      groups.input.focus();
      return;
    }
    const selector = {};
    for (const [k, f] of [["site", site], ["ward", ward], ["room", room], ["system_version", system]]) {
      if (f.input.value.trim()) selector[k] = f.input.value.trim();
    }
    const body = {model: model.input.value, version: version.input.value, selector, groups: parsed,
      success_threshold: Number(success.input.value) / 100, error_threshold: {count: Number(errors.input.value || 0)},
      in_progress_timeout_s: Math.round(Number(timeout.input.value) * 60)};
    if (previous.input.value) body.previous_version = previous.input.value;
    try {
      const r = await post("/api/v1/rollouts", body);
      report(`Rollout ${r.id} started: ${r.model} ${r.version} to ${r.devices_total} device(s).`, "ok");
      await refreshRollouts();
    } catch (err) {
      report(err.routeMissing ? "Rollouts are not available on this server yet (POST /api/v1/rollouts)." : `The rollout was refused: ${err.message}`, "error");
    }
  });
  return form;
}
