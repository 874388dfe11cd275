// Jobs: start a maintenance job on a selection of devices and follow each device's progress.
import {can, get, getOptional, post, session} from "./api.js";
import {h, append, clear, field, fmtTime, pageHeader, statusLine, actionButton, table, notice, unavailable, badge, keepFocus} from "./ui.js";

const KINDS = [
  ["restart_agent", "Restart the agent", "operator"],
  ["self_test", "Self-test", "operator"],
  ["collect_diagnostics", "Collect diagnostics", "operator"],
  ["set_log_level", "Set the log level for a while", "operator"],
  ["push_config", "Push a configuration (device.toml)", "operator"],
  ["reboot", "Reboot", "admin"],
  ["rotate_key", "Rotate the device key", "admin"],
  ["factory_reset", "Factory reset (the device must enroll again)", "admin"],
];
const FINAL = new Set(["succeeded", "failed", "refused", "expired", "cancelled"]);
const STATE_ORDER = ["queued", "released", "received", "running", "succeeded", "failed", "refused", "expired", "cancelled"];

export function jobStateBadge(state) { return badge(state, `job job-${state}`); }

function countsText(counts) {
  return STATE_ORDER.filter(s => counts && counts[s]).map(s => `${counts[s]} ${s}`).join(", ") || "no jobs";
}

export function batchStatus(b) {
  if (b.status === "awaiting_approval") return "awaiting a second admin's approval";
  if (b.status !== "running") return `${b.status}${b.end_reason ? ` (${b.end_reason})` : ""}`;
  return b.done ? "finished" : "running";
}

const pct = area => `${(area * 100).toFixed(1)}%`;
const regionsText = rs => (rs === null || rs === undefined ? "unknown"
  : rs.length ? rs.map(r => `${r.name === null ? "(unnamed)" : r.name} ${pct(r.area)}`).join(", ") : "none");
const sourceText = s => (s ? [s.kind, s.host, s.file, s.camera_index].filter(v => v !== undefined && v !== null).join(" ") : "unknown");

// What a privacy-reducing configuration job changes (from its approval record): one line per group of devices.
function privacyFacts(approval) {
  return (approval.changes.changes || []).map(c => h("li", {},
    `${c.devices.length} device(s): ${c.reasons.join("; ")}. Privacy regions before: ${regionsText(c.regions_before)};`
    + ` after: ${regionsText(c.regions_after)}. Source before: ${sourceText(c.source_before)}; after: ${sourceText(c.source_after)}.`));
}

function progressOf(batch) {
  const c = batch.counts || {};
  const done = [...FINAL].reduce((n, s) => n + (c[s] || 0), 0);
  return {done, total: batch.devices || 0};
}

function jobsTable(batch) {
  return table([
    {label: "Device", cell: j => h("a", {href: `#/devices/${encodeURIComponent(j.device_id)}`}, j.device_id)},
    {label: "State", cell: j => jobStateBadge(j.state)},
    {label: "Progress", cell: j => (j.progress === null || j.progress === undefined ? "—"
      : h("progress", {max: 1, value: j.progress, "aria-label": `${j.device_id} progress`}, `${Math.round(j.progress * 100)}%`))},
    {label: "Reason", cell: j => j.reason || "—"},
    {label: "Updated", cell: j => fmtTime(j.updated_at)},
  ], batch.jobs || [], {empty: "No devices in this batch."});
}

// Poll a batch into `out` until every job is final (used by the device page's zone editor too).
export function followBatch(batchId, out, timers) {
  const tick = async () => {
    let batch;
    try { batch = await get(`/api/v1/jobs/${encodeURIComponent(batchId)}`); } catch (err) {
      clear(out).appendChild(notice(`Cannot follow ${batchId}: ${err.message}`, "error"));
      return true;
    }
    const {done, total} = progressOf(batch);
    const single = (batch.jobs || []).length === 1 ? batch.jobs[0] : null;
    const awaiting = batch.status === "awaiting_approval";
    clear(out).append(
      h("p", {class: "job-line", dataset: {batch: batchId, state: awaiting ? batch.status : single ? single.state : batch.status}},
        "Job ", h("a", {href: `#/jobs/${encodeURIComponent(batchId)}`}, batchId), ` (${batch.kind}): `,
        awaiting ? "awaiting a second admin's approval (it reduces privacy); no device has it yet"
          : single ? jobStateBadge(single.state) : `${done} of ${total} finished (${countsText(batch.counts)})`,
        single && single.reason ? ` ${single.reason}` : ""),
      h("progress", {max: total || 1, value: done, "aria-label": `Job ${batchId}: ${done} of ${total} finished`}));
    return batch.done || batch.status !== "running" && (batch.counts.queued || 0) + (batch.counts.released || 0) === 0;
  };
  tick().then(finished => {
    if (finished) return;
    const t = setInterval(async () => { if (await tick()) clearInterval(t); }, 1000);
    timers.push(t);
  });
}

async function renderBatch(root, ctx, batchId) {
  const {el: statusEl, report} = statusLine();
  const head = h("div");
  const body = h("div");
  root.append(pageHeader(`Job batch ${batchId}`), statusEl, h("p", {}, h("a", {href: "#/jobs"}, "← Jobs")), head, body);
  let timer = null;
  async function refresh() {
    let batch;
    try { batch = await get(`/api/v1/jobs/${encodeURIComponent(batchId)}`); } catch (err) {
      report(`Cannot load the batch: ${err.message}`, "error");
      return;
    }
    const {done, total} = progressOf(batch);
    const approval = batch.approval;
    const awaiting = batch.status === "awaiting_approval";
    const mine = approval && session.username !== null && approval.requested_by === `user:${session.username}`;
    append(clear(head), [
      h("dl", {class: "facts"},
        h("dt", {}, "Kind"), h("dd", {}, batch.kind),
        h("dt", {}, "Status"), h("dd", {}, batchStatus(batch)),
        approval ? [h("dt", {}, "Privacy"), h("dd", {},
          h("p", {}, `Reduces privacy: needs a second admin's approval (${approval.state}`
            + `${approval.decided_by ? ` by ${approval.decided_by}, ${fmtTime(approval.decided_at)}` : ""}).`),
          h("ul", {class: "privacy-changes"}, privacyFacts(approval)))] : null,
        h("dt", {}, "Started"), h("dd", {}, `${fmtTime(batch.created_at)} by ${batch.created_by}`),
        h("dt", {}, "Target"), h("dd", {}, JSON.stringify(batch.target)),
        h("dt", {}, "Parameters"), h("dd", {}, Object.keys(batch.params || {}).length ? JSON.stringify(batch.params) : "—"),
        batch.config_sha256 ? [h("dt", {}, "Config sha256"), h("dd", {class: "mono"}, batch.config_sha256)] : null,
        h("dt", {}, "Expires"), h("dd", {}, fmtTime(batch.expires_at)),
        h("dt", {}, "Progress"), h("dd", {}, h("progress", {max: total || 1, value: done, "aria-label": "Batch progress"}),
          ` ${done} of ${total} finished: ${countsText(batch.counts)}`)),
      can("admin") && awaiting && !mine
        ? actionButton("Approve", async () => {
          await post(`/api/v1/jobs/${encodeURIComponent(batchId)}/approve`, {});
          await refresh();
          return "Approved: the devices get the configuration now, with your approval.";
        }, {report, cls: "primary", confirmText: "Approve this configuration? It removes, shrinks or moves a privacy region or changes the camera (see Privacy)."})
        : null,
      can("admin") && awaiting
        ? actionButton("Reject", async () => {
          await post(`/api/v1/jobs/${encodeURIComponent(batchId)}/reject`, {});
          await refresh();
          return "Rejected: no device got this configuration.";
        }, {report, confirmText: "Reject this configuration? No device will get it."})
        : null,
      can("operator") && (batch.status === "running" || awaiting) && !batch.done
        ? actionButton("Cancel the batch", async () => {
          await post(`/api/v1/jobs/${encodeURIComponent(batchId)}/cancel`, {});
          await refresh();
          return "Batch cancelled: jobs not yet received by their device will not be sent.";
        }, {report, confirmText: "Cancel this batch? Jobs already received by a device still run."})
        : null]);
    keepFocus(root, () => clear(body).appendChild(jobsTable(batch)));
    if (batch.done && timer) { clearInterval(timer); timer = null; }
  }
  await refresh();
  timer = setInterval(refresh, Math.max(1000, Math.min(ctx.refreshMs, 2000)));
  return () => { if (timer) clearInterval(timer); };
}

export async function render(root, ctx) {
  if (ctx.args[0]) return renderBatch(root, ctx, ctx.args[0]);
  const {el: statusEl, report} = statusLine();
  root.append(pageHeader("Jobs"), statusEl);
  const first = await getOptional("/api/v1/jobs?limit=100");
  if (first === null) {
    root.appendChild(unavailable("Jobs", "GET /api/v1/jobs"));
    return null;
  }
  const timers = [];
  const listOut = h("div");

  // ---- start form (operator) ---------------------------------------------------------------------------
  if (can("operator")) {
    const overview = await get("/api/v1/fleet/overview");
    const active = overview.devices.filter(d => d.status === "active");
    const kind = field("Job", "select", {}, KINDS.filter(k => can(k[2])).map(([v, t, r]) => [v, r === "admin" ? `${t} (admin)` : t]));
    const filter = field("Filter devices", "search", {placeholder: "room, ward, name…", autocomplete: "off"});
    const boxes = h("fieldset", {class: "device-picks"}, h("legend", {}, "Devices (active only)"));
    const checks = active.map(d => {
      const f = field(`${d.name || d.id} · ${d.site || "—"} / ${d.ward || "—"} / ${d.room}`, "checkbox", {value: d.id, name: "device"});
      f.wrap.dataset.search = [d.id, d.name, d.site, d.ward, d.room].join(" ").toLowerCase();
      boxes.appendChild(f.wrap);
      return f;
    });
    if (!active.length) boxes.appendChild(h("p", {class: "empty"}, "No active devices."));
    const pickAll = h("button", {type: "button"}, "Select the shown devices");
    const pickNone = h("button", {type: "button"}, "Clear selection");
    const level = field("Log level", "select", {}, [["debug", "debug"], ["info", "info"], ["warning", "warning"], ["error", "error"]]);
    const duration = field("For (minutes)", "number", {min: 1, max: 1440, value: "30"});
    const logParams = h("div", {class: "row", hidden: true}, level.wrap, duration.wrap);
    const config = field("Configuration (device.toml text)", "textarea", {rows: 8, spellcheck: "false", class: "mono"});
    config.wrap.hidden = true;
    const expires = field("Expires after (minutes)", "number", {min: 1, max: 10080, value: "60"});
    const rate = field("At most this many per minute (optional)", "number", {min: 1, max: 100000});
    const threshold = field("Stop after this many failures (optional)", "number", {min: 1, max: 10000});
    const submit = h("button", {type: "submit", class: "primary"}, "Start the job");
    const form = h("form", {class: "card", "aria-labelledby": "start-h"},
      h("h2", {id: "start-h"}, "Start a job"), kind.wrap, filter.wrap, h("div", {class: "row"}, pickAll, pickNone), boxes,
      logParams, config.wrap, h("div", {class: "row"}, expires.wrap, rate.wrap, threshold.wrap), submit);
    const follow = h("div", {"aria-live": "polite"});
    root.append(form, follow);
    kind.input.addEventListener("change", () => {
      logParams.hidden = kind.input.value !== "set_log_level";
      config.wrap.hidden = kind.input.value !== "push_config";
    });
    filter.input.addEventListener("input", () => {
      const q = filter.input.value.trim().toLowerCase();
      for (const f of checks) f.wrap.hidden = q !== "" && !f.wrap.dataset.search.includes(q);
    });
    pickAll.addEventListener("click", () => { for (const f of checks) if (!f.wrap.hidden) f.input.checked = true; });
    pickNone.addEventListener("click", () => { for (const f of checks) f.input.checked = false; });
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      const ids = checks.filter(f => f.input.checked).map(f => f.input.value);
      if (!ids.length) { report("Select at least one device.", "error"); return; }
      const body = {kind: kind.input.value, target: {device_ids: ids},
        expires_in_s: Math.round(Number(expires.input.value || 60) * 60)};
      if (body.kind === "set_log_level") body.params = {level: level.input.value, duration_s: Math.round(Number(duration.input.value) * 60)};
      if (body.kind === "push_config") body.config = config.input.value;
      if (rate.input.value) body.rate_per_minute = Number(rate.input.value);
      if (threshold.input.value) body.error_threshold = Number(threshold.input.value);
      submit.disabled = true;
      try {
        const made = await post("/api/v1/jobs", body);
        const skipped = made.skipped && made.skipped.length ? `; skipped ${made.skipped.join(", ")}` : "";
        report(made.status === "awaiting_approval"
          ? `Created ${made.batch_id} for ${made.devices} device(s)${skipped}; it reduces privacy (${made.privacy.reasons.join("; ")}), so it waits for a second admin's approval.`
          : `Started ${made.batch_id} on ${made.devices} device(s)${skipped}.`, "ok");
        followBatch(made.batch_id, follow, timers);
        await refresh();
      } catch (err) {
        report(`The job was refused: ${err.message}`, "error");
      } finally { submit.disabled = false; }
    });
  } else {
    root.appendChild(notice("Read-only: starting jobs needs the operator role."));
  }

  root.append(h("h2", {}, "Recent batches"), listOut);
  function drawList(data) {
    clear(listOut).appendChild(table([
      {label: "Batch", cell: b => h("a", {href: `#/jobs/${encodeURIComponent(b.batch_id)}`}, b.batch_id)},
      {label: "Kind", cell: b => b.kind},
      {label: "Started", cell: b => `${fmtTime(b.created_at)} by ${b.created_by}`},
      {label: "Status", cell: b => batchStatus(b)},
      {label: "Progress", cell: b => {
        const {done, total} = progressOf(b);
        return h("span", {}, h("progress", {max: total || 1, value: done, "aria-label": `${b.batch_id} progress`}), ` ${countsText(b.counts)}`);
      }},
    ], data.batches, {empty: "No jobs yet."}));
  }
  async function refresh() {
    try { const data = await get("/api/v1/jobs?limit=100"); keepFocus(listOut, () => drawList(data)); } catch (err) { report(`Cannot load jobs: ${err.message}`, "error"); }
  }
  drawList(first);
  timers.push(setInterval(refresh, Math.max(ctx.refreshMs, 3000)));
  return () => { for (const t of timers) clearInterval(t); };
}
