// Models and rollouts: the model library (upload), start / pause / resume / abort / roll back a rollout,
// and each rollout's progress per group.
import {can, get, getOptional, post, session, ApiError} from "./api.js";
import {h, clear, field, fmtTime, pageHeader, statusLine, actionButton, table, notice, unavailable, badge, keepFocus} from "./ui.js";

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
  const detail = Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ") || "no devices reporting";
  return h("li", {class: "group-progress", dataset: {group: String(g.group)}},
    h("span", {class: "group-label"}, `Group ${g.group} (${g.size} device${g.size === 1 ? "" : "s"}, needs ${g.needed}): `),
    h("progress", {max: g.size || 1, value: healthy, "aria-label": `Rollout ${r.id} group ${g.group}: ${healthy} of ${g.size} healthy`}),
    ` ${healthy}/${g.size} healthy`, bad ? `, ${bad} failed or withdrawn` : "",
    h("span", {class: "muted"}, ` · ${g.started ? (g.succeeded ? "succeeded" : "started") : "waiting"} · ${detail}`));
}

// Each device of a rollout: its step and, in words, why it is there and what happens next.
function deviceTable(r) {
  const columns = [
    {label: "Device", cell: d => h("a", {href: `#/devices/${encodeURIComponent(d.device_id)}`}, d.device_id)},
    {label: "Group", cell: d => String(d.group)},
    {label: "Step", cell: d => badge(d.status, `dev-${d.status}`)},
    {label: "Why / next", cell: d => h("span", {class: "explain"}, d.explain || d.reason || "")},
    {label: "Last report", cell: d => d.last_report_at ? fmtTime(d.last_report_at) : "—"},
  ];
  return table(columns, r.devices || [], {caption: `Devices of rollout ${r.id}`, empty: "No devices."});
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
    keepFocus(libraryOut, () => clear(libraryOut).appendChild(table([
      {label: "Model", cell: v => v.name},
      {label: "Version", cell: v => v.version},
      {label: "Status", cell: v => badge(v.status, `lib lib-${String(v.status).split(" ")[0]}`)},
      {label: "Builds", cell: v => (v.builds || []).map(b => `${b.backend}/${b.runtime}${b.hardware ? ` (${b.hardware})` : ""}`).join(", ") || "—"},
      {label: "License", cell: v => v.license || "—"},
      {label: "Devices running it", cell: v => String(v.devices ?? 0)},
      {label: "Uploaded", cell: v => (v.uploaded_at ? `${fmtTime(v.uploaded_at)} by ${v.uploaded_by}` : "—")},
    ], rows, {empty: "The library is empty."})));
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
        report(`${got.name} ${got.version} uploaded (${got.status}): it is published once signed with the offline targets key.`, "ok");
        await refreshLibrary();
      } catch (err) {
        report(err.routeMissing ? "Uploading is not available on this server yet (POST /api/v1/models)." : `Upload refused: ${err.message}`, "error");
      }
    });
    libraryOut.after(form);
  }

  // ---- start a rollout (operator) ---------------------------------------------------------------------
  if (can("operator")) {
    const model = field("Model", "text", {required: true, autocomplete: "off", list: "model-names"});
    const version = field("Version", "text", {required: true, autocomplete: "off"});
    const previous = field("Previous version (for roll back, optional)", "text", {autocomplete: "off"});
    const site = field("Site (optional)", "text", {autocomplete: "off"});
    const ward = field("Ward (optional)", "text", {autocomplete: "off"});
    const room = field("Room (optional)", "text", {autocomplete: "off"});
    const groups = field("Groups (comma separated: a count, or a percent of the selection)", "text", {value: "1, 100%", required: true});
    const success = field("Success threshold per group (%)", "number", {min: 1, max: 100, value: "100"});
    const errors = field("Stop after more than this many failures", "number", {min: 0, value: "0"});
    const timeout = field("Step timeout (minutes)", "number", {min: 1, max: 10080, value: "30"});
    const names = h("datalist", {id: "model-names"}, models.map(m => h("option", {value: m.name})));
    const form = h("form", {class: "card", "aria-labelledby": "start-rollout-h"},
      h("h2", {id: "start-rollout-h"}, "Start a rollout"), names,
      h("div", {class: "row"}, model.wrap, version.wrap, previous.wrap),
      h("div", {class: "row"}, site.wrap, ward.wrap, room.wrap),
      h("div", {class: "row"}, groups.wrap, success.wrap, errors.wrap, timeout.wrap),
      h("button", {type: "submit", class: "primary"}, "Start the rollout"));
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      const parsed = groups.input.value.split(",").map(s => s.trim()).filter(Boolean).map(s =>
        (s.endsWith("%") ? {percent: Number(s.slice(0, -1))} : {count: Number(s)}));
      if (!parsed.length || parsed.some(g => Object.values(g).some(v => !Number.isFinite(v) || v <= 0))) {
        report("Groups are counts (e.g. 2) or percents (e.g. 50%), separated by commas.", "error");
        groups.input.focus();
        return;
      }
      const selector = {};
      for (const [k, f] of [["site", site], ["ward", ward], ["room", room]]) if (f.input.value.trim()) selector[k] = f.input.value.trim();
      const body = {model: model.input.value.trim(), version: version.input.value.trim(), selector, groups: parsed,
        success_threshold: Number(success.input.value) / 100, error_threshold: {count: Number(errors.input.value || 0)},
        in_progress_timeout_s: Math.round(Number(timeout.input.value) * 60)};
      if (previous.input.value.trim()) body.previous_version = previous.input.value.trim();
      try {
        const r = await post("/api/v1/rollouts", body);
        report(`Rollout ${r.id} started: ${r.model} ${r.version} to ${r.devices_total} device(s).`, "ok");
        await refreshRollouts();
      } catch (err) {
        report(err.routeMissing ? "Rollouts are not available on this server yet (POST /api/v1/rollouts)." : `The rollout was refused: ${err.message}`, "error");
      }
    });
    root.appendChild(form);
  }

  // ---- rollouts -----------------------------------------------------------------------------------------
  root.appendChild(h("section", {class: "card", "aria-labelledby": "rollouts-h"}, h("h2", {id: "rollouts-h"}, "Rollouts"), rolloutsOut));
  async function refreshRollouts() {
    let data;
    try { data = await getOptional("/api/v1/rollouts"); } catch (err) { report(`Cannot load rollouts: ${err.message}`, "error"); return; }
    if (data === null) { clear(rolloutsOut).appendChild(unavailable("Rollouts", "GET /api/v1/rollouts")); return; }
    const list = data.rollouts || [];
    const details = await Promise.all(list.slice(0, DETAILED).map(
      r => get(`/api/v1/rollouts/${encodeURIComponent(r.id)}`).catch(() => null)));
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
          h("h3", {id: `ro-${r.id}`}, `${r.model} ${r.version} `, badge(r.status, `ro ro-${r.status}`)),
          h("p", {class: "muted"}, `${r.id} · ${r.devices_total} device(s) · current group ${r.current_group ?? "—"} · ${r.failures} failure(s)`,
            ` · started ${fmtTime(r.created_at)} by ${r.created_by}`, r.reason ? ` · ${r.reason}` : ""),
          h("ul", {class: "groups"}, (r.groups || []).map(g => groupProgress(r, g))),
          detail ? deviceTable(detail) : null,
          buttons.length ? h("p", {class: "actions"}, buttons) : null));
      }
    });
  }
  await refreshRollouts();
  if (!can("operator")) root.appendChild(notice("Read-only: uploading models and steering rollouts need the operator role."));
  timers.push(setInterval(refreshRollouts, Math.max(ctx.refreshMs, 3000)));
  return () => { for (const t of timers) clearInterval(t); };
}
