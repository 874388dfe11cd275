// One job batch: what it does and to which devices (in words), its progress per device, approval and cancel, and
// each device's output (diagnostics) as readable sections.
import {can, get, post, session} from "./api.js";
import {h, append, clear, fmtTime, pageHeader, statusLine, actionButton, table, keepFocus, badge} from "./ui.js";
import {deviceWords, kindLabel, paramsWords, targetWords} from "./job-words.js";
import {outputView} from "./job-output.js";

const FINAL = new Set(["succeeded", "failed", "refused", "expired", "cancelled"]);
const STATE_ORDER = ["queued", "released", "received", "running", "succeeded", "failed", "refused", "expired", "cancelled"];

export function jobStateBadge(state) { return badge(state, `job job-${state}`); }

export function countsText(counts) {
  return STATE_ORDER.filter(s => counts && counts[s]).map(s => `${counts[s]} ${s}`).join(", ") || "no jobs";
}

export function batchStatus(b) {
  if (b.status === "awaiting_approval") return "awaiting a second admin's approval";
  if (b.status !== "running") return `${b.status}${b.end_reason ? ` (${b.end_reason})` : ""}`;
  return b.done ? "finished" : "running";
}

export function progressOf(batch) {
  const c = batch.counts || {};
  const done = [...FINAL].reduce((n, s) => n + (c[s] || 0), 0);
  return {done, total: batch.devices || 0};
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

function jobsTable(batch, showOutput) {
  return table([
    {label: "Device", cell: j => h("a", {href: `#/devices/${encodeURIComponent(j.device_id)}`}, deviceWords(j))},
    {label: "State", cell: j => jobStateBadge(j.state)},
    {label: "Progress", cell: j => (j.progress === null || j.progress === undefined ? "—"
      : h("progress", {max: 1, value: j.progress, "aria-label": `${deviceWords(j)} progress`}, `${Math.round(j.progress * 100)}%`))},
    {label: "Reason", cell: j => j.reason || "—"},
    {label: "Updated", cell: j => fmtTime(j.updated_at)},
    {label: "Output", cell: j => (!j.has_output ? "—" : !can("operator") ? "reported (operators can read it)"
      : h("button", {type: "button", onclick: () => showOutput(j), "aria-label": `Show the output of ${deviceWords(j)}`}, "Show output"))},
  ], batch.jobs || [], {empty: "No devices in this batch."});
}

function batchFacts(batch) {
  const {done, total} = progressOf(batch);
  const approval = batch.approval;
  return h("dl", {class: "facts"},
    h("dt", {}, "Job"), h("dd", {}, kindLabel(batch.kind)),
    h("dt", {}, "Status"), h("dd", {}, batchStatus(batch)),
    approval ? [h("dt", {}, "Privacy"), h("dd", {},
      h("p", {}, `Reduces privacy: needs a second admin's approval (${approval.state}`
        + `${approval.decided_by ? ` by ${approval.decided_by}, ${fmtTime(approval.decided_at)}` : ""}).`),
      h("ul", {class: "privacy-changes"}, privacyFacts(approval)))] : null,
    h("dt", {}, "Started"), h("dd", {}, `${fmtTime(batch.created_at)} by ${batch.created_by}`),
    h("dt", {}, "Devices"), h("dd", {class: "job-target"}, targetWords(batch.target, batch.jobs || [])),
    h("dt", {}, "Settings"), h("dd", {class: "job-params"}, paramsWords(batch.kind, batch.params, batch.config_sha256)),
    batch.rate_per_minute ? [h("dt", {}, "Pace"), h("dd", {}, `at most ${batch.rate_per_minute} devices a minute`)] : null,
    batch.error_threshold !== null && batch.error_threshold !== undefined
      ? [h("dt", {}, "Stops"), h("dd", {}, batch.error_threshold < 1 ? `when ${Math.round(batch.error_threshold * 100)}% of the devices failed`
        : `after ${batch.error_threshold} failures`)] : null,
    h("dt", {}, "Expires"), h("dd", {}, fmtTime(batch.expires_at)),
    h("dt", {}, "Progress"), h("dd", {}, h("progress", {max: total || 1, value: done, "aria-label": "Batch progress"}),
      ` ${done} of ${total} finished: ${countsText(batch.counts)}`));
}

function batchActions(batch, batchId, report, refresh) {
  const approval = batch.approval;
  const awaiting = batch.status === "awaiting_approval";
  const mine = approval && session.username !== null && approval.requested_by === `user:${session.username}`;
  const act = (label, path, done, confirmText, cls) => actionButton(label, async () => {
    await post(`/api/v1/jobs/${encodeURIComponent(batchId)}/${path}`, {});
    await refresh();
    return done;
  }, {report, cls, confirmText});
  return [
    can("admin") && awaiting && !mine ? act("Approve", "approve", "Approved: the devices get the configuration now, with your approval.",
      "Approve this configuration? It removes, shrinks or moves a privacy region or changes the camera (see Privacy).", "primary") : null,
    can("admin") && awaiting ? act("Reject", "reject", "Rejected: no device got this configuration.",
      "Reject this configuration? No device will get it.") : null,
    can("operator") && (batch.status === "running" || awaiting) && !batch.done
      ? act("Cancel the batch", "cancel", "Batch cancelled: jobs not yet received by their device will not be sent.",
        "Cancel this batch? Jobs already received by a device still run.") : null,
  ];
}

export async function renderBatch(root, ctx, batchId) {
  const {el: statusEl, report} = statusLine();
  const head = h("div");
  const body = h("div");
  const outputOut = h("div", {class: "job-outputs"});
  root.append(pageHeader(`Job batch ${batchId}`), statusEl, h("p", {}, h("a", {href: "#/jobs"}, "← Jobs")), head, body, outputOut);
  let timer = null;
  let shownFor = null;
  let autoShown = false;
  let kind = "output";
  let asked = 0;  // only the latest request for an output is shown (a click wins over an earlier automatic one)
  async function showOutput(job, focus = true) {
    shownFor = job.device_id;
    const mine = ++asked;
    let got;
    try {
      got = await get(`/api/v1/jobs/${encodeURIComponent(batchId)}/devices/${encodeURIComponent(job.device_id)}/output`);
    } catch (err) { report(`Cannot load the output of ${deviceWords(job)}: ${err.message}`, "error", "output"); return; }
    if (mine !== asked) return;
    report.settle("output");
    const safe = (job.device_name || job.device_id).replace(/[^A-Za-z0-9_.-]/g, "_");
    clear(outputOut).appendChild(outputView(got.output || "", {heading: `Output of ${deviceWords(job)}`,
      filename: `${kindLabel(kind).toLowerCase().replace(/\W+/g, "-")}-${safe}.txt`, headingId: "job-output-h"}));
    if (focus) outputOut.querySelector("h2").focus();
  }
  async function refresh() {
    let batch;
    try { batch = await get(`/api/v1/jobs/${encodeURIComponent(batchId)}`); } catch (err) {
      report(`Cannot load the batch: ${err.message}`, "error", "load");
      return;
    }
    report.settle("load");
    kind = batch.kind;
    append(clear(head), [batchFacts(batch), batchActions(batch, batchId, report, refresh)]);
    keepFocus(root, () => clear(body).appendChild(jobsTable(batch, job => showOutput(job))));
    const withOutput = (batch.jobs || []).filter(j => j.has_output);
    if (!autoShown && shownFor === null && withOutput.length === 1 && can("operator")) {  // one device: show it
      autoShown = true;
      await showOutput(withOutput[0], false);
    }
    if (batch.done && timer) { clearInterval(timer); timer = null; }
  }
  await refresh();
  timer = setInterval(refresh, Math.max(1000, Math.min(ctx.refreshMs, 2000)));
  return () => { if (timer) clearInterval(timer); };
}
