// Jobs: start a maintenance job on a selection of devices and follow each device's progress. The job kind defaults
// to a harmless one (diagnostics); a disruptive one asks for a confirmation naming the devices.
import {can, get, getOptional, post} from "./api.js";
import {h, clear, field, fieldErrors, fmtTime, pageHeader, statusLine, table, notice, unavailable, keepFocus} from "./ui.js";
import {KINDS, devicesWords, kindInfo, kindLabel, targetWords} from "./job-words.js";
import {batchStatus, countsText, jobStateBadge, progressOf, renderBatch} from "./job-batch.js";

export {batchStatus, jobStateBadge};

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
        "Job ", h("a", {href: `#/jobs/${encodeURIComponent(batchId)}`}, batchId), ` (${kindLabel(batch.kind)}): `,
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

// The kind select: harmless kinds first (the default is the first, diagnostics), disruptive ones in their own
// group; only the kinds this account may start.
function kindSelect() {
  const kind = field("Job", "select", {});
  const label = k => (k.role === "admin" ? `${k.label} (admin)` : k.label);
  const allowed = KINDS.filter(k => can(k.role));
  kind.input.append(
    h("optgroup", {label: "Harmless"}, allowed.filter(k => !k.disruptive).map(k => h("option", {value: k.kind}, label(k)))),
    h("optgroup", {label: "Disruptive (asks for a confirmation)"},
      allowed.filter(k => k.disruptive).map(k => h("option", {value: k.kind}, label(k)))));
  kind.input.value = allowed[0].kind;
  const hint = h("p", {class: "field-hint", id: "job-kind-hint", "aria-live": "polite"});
  kind.input.setAttribute("aria-describedby", hint.id);
  kind.wrap.appendChild(hint);
  const describe = () => { hint.textContent = kindInfo(kind.input.value).disruptive || "Harmless: the devices keep working."; };
  describe();
  kind.input.addEventListener("change", describe);
  return kind;
}

// Whether to go ahead: a disruptive kind asks, naming the devices it reaches.
function confirmed(kindName, devices) {
  const info = kindInfo(kindName);
  if (!info.disruptive) return true;
  return window.confirm(`${info.label} on ${devicesWords(devices, 20)}?\n\n${info.disruptive}`);
}

// POST /api/v1/jobs's body from the form's fields.
function requestBody(kind, chosen, {expires, level, duration, config, rate, threshold}) {
  const body = {kind, target: {device_ids: chosen.map(f => f.input.value)},
    expires_in_s: Math.round(Number(expires.input.value || 60) * 60)};
  if (kind === "set_log_level") body.params = {level: level.input.value, duration_s: Math.round(Number(duration.input.value) * 60)};
  if (kind === "push_config") body.config = config.input.value;
  if (rate.input.value) body.rate_per_minute = Number(rate.input.value);
  if (threshold.input.value) body.error_threshold = Number(threshold.input.value);
  return body;
}

function startForm(active, report, follow, afterStart, timers) {
  const kind = kindSelect();
  const filter = field("Filter devices", "search", {placeholder: "room, ward, name…", autocomplete: "off"});
  const boxes = h("fieldset", {class: "device-picks"}, h("legend", {}, "Devices (active only)"));
  const checks = active.map(d => {
    const f = field(`${d.name || d.id} · ${d.site || "—"} / ${d.ward || "—"} / ${d.room}`, "checkbox", {value: d.id, name: "device"});
    f.wrap.dataset.search = [d.id, d.name, d.site, d.ward, d.room].join(" ").toLowerCase();
    f.device = d;
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
  const problems = fieldErrors({level, duration_s: duration, config, expires_in_s: expires, rate_per_minute: rate,
    error_threshold: threshold});
  const submit = h("button", {type: "submit", class: "primary"}, "Start the job");
  const form = h("form", {class: "card", "aria-labelledby": "start-h"},
    h("h2", {id: "start-h"}, "Start a job"), kind.wrap, filter.wrap, h("div", {class: "row"}, pickAll, pickNone), boxes,
    logParams, config.wrap, h("div", {class: "row"}, expires.wrap, rate.wrap, threshold.wrap), submit);
  const showParams = () => {
    logParams.hidden = kind.input.value !== "set_log_level";
    config.wrap.hidden = kind.input.value !== "push_config";
  };
  kind.input.addEventListener("change", showParams);
  filter.input.addEventListener("input", () => {
    const q = filter.input.value.trim().toLowerCase();
    for (const f of checks) f.wrap.hidden = q !== "" && !f.wrap.dataset.search.includes(q);
  });
  pickAll.addEventListener("click", () => { for (const f of checks) if (!f.wrap.hidden) f.input.checked = true; });
  pickNone.addEventListener("click", () => { for (const f of checks) f.input.checked = false; });
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const chosen = checks.filter(f => f.input.checked);
    if (!chosen.length) { report("Select at least one device.", "error"); return; }
    if (!confirmed(kind.input.value, chosen.map(f => f.device))) { report("Nothing started.", "info"); return; }
    const body = requestBody(kind.input.value, chosen, {expires, level, duration, config, rate, threshold});
    submit.disabled = true;
    try {
      const made = await post("/api/v1/jobs", body);
      problems.clear();
      const skipped = made.skipped && made.skipped.length ? `; skipped ${made.skipped.join(", ")}` : "";
      report(made.status === "awaiting_approval"
        ? `Created ${made.batch_id} for ${made.devices} device(s)${skipped}; it reduces privacy (${made.privacy.reasons.join("; ")}), so it waits for a second admin's approval.`
        : `Started ${made.batch_id} on ${made.devices} device(s)${skipped}.`, "ok");
      followBatch(made.batch_id, follow, timers);
      await afterStart();
    } catch (err) {
      problems.show(err.message);
      report(`The job was refused: ${err.message}`, "error");
    } finally { submit.disabled = false; }
  });
  return form;
}

function batchesTable(data) {
  return table([
    {label: "Batch", cell: b => h("a", {href: `#/jobs/${encodeURIComponent(b.batch_id)}`}, b.batch_id)},
    {label: "Job", cell: b => kindLabel(b.kind)},
    {label: "Devices", cell: b => targetWords(b.target, null, b.devices)},
    {label: "Started", cell: b => `${fmtTime(b.created_at)} by ${b.created_by}`},
    {label: "Status", cell: b => batchStatus(b)},
    {label: "Progress", cell: b => {
      const {done, total} = progressOf(b);
      return h("span", {}, h("progress", {max: total || 1, value: done, "aria-label": `${b.batch_id} progress`}), ` ${countsText(b.counts)}`);
    }},
  ], data.batches, {empty: "No jobs yet."});
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
  async function refresh() {
    try {
      const data = await get("/api/v1/jobs?limit=100");
      report.settle("load");
      keepFocus(listOut, () => clear(listOut).appendChild(batchesTable(data)));
    } catch (err) { report(`Cannot load jobs: ${err.message}`, "error", "load"); }
  }
  if (can("operator")) {
    const overview = await get("/api/v1/fleet/overview");
    const follow = h("div", {"aria-live": "polite"});
    root.append(startForm(overview.devices.filter(d => d.status === "active"), report, follow, refresh, timers), follow);
  } else {
    root.appendChild(notice("Read-only: starting jobs needs the operator role."));
  }
  root.append(h("h2", {}, "Recent batches"), listOut);
  listOut.appendChild(batchesTable(first));
  timers.push(setInterval(refresh, Math.max(ctx.refreshMs, 3000)));
  return () => { for (const t of timers) clearInterval(t); };
}
