// One vocabulary of device states for every page (fleet, device, enrollment, rollouts): each state's plain label
// and, in one sentence, what it means and what to do; why a device is degraded, in words. The thresholds come from
// the server with each heartbeat (min_app_fps, hot_c: fleet/health/store.py), so the words say what it judged by.
import {get, getOptional} from "./api.js";
import {h, badge, fmtNum} from "./ui.js";

export const STATES = {
  online: {label: "online",
    explain: "Heard from on time and working normally: the apps watch the room. Nothing to do."},
  offline: {label: "offline",
    explain: "Silent for longer than the server allows: no alerts come from this room. Check the camera's power and network cable; the console shows when it is back."},
  degraded: {label: "degraded",
    explain: "Connected, but something (its reasons, shown with it) may make alerts late or missed. Do what each reason says."},
  updating: {label: "updating",
    explain: "A rollout is installing a model update: it keeps watching with its current model while the update downloads and is tested, restarts once to switch, and goes back to the previous model if the new one fails. Nothing to do; follow it on the Models page."},
  pending: {label: "pending approval",
    explain: "Enrolled with a token that needs approval; the server ignores it until then. Check that it is the camera you expect (name, room), then approve it."},
  quarantined: {label: "quarantined",
    explain: "Stopped by an operator: the server refuses what it sends, so no alerts come from this room. Release it once the reason is dealt with."},
  revoked: {label: "revoked",
    explain: "Its credential is withdrawn for good and it can never connect again. To use the camera again, enroll it with a new token."},
  never_seen: {label: "not heard from yet",
    explain: "Enrolled, but no heartbeat has arrived yet. Check that the camera is powered and on the network; a new camera reports within a minute."},
  active: {label: "active",
    explain: "Enrolled and allowed to connect; the fleet page shows whether it is online."},
};
// The states the fleet page counts and filters by, in this order.
export const DISPLAY_STATES = ["online", "offline", "degraded", "updating", "pending", "quarantined", "revoked", "never_seen"];

const minFps = health => fmtNum(health && health.min_app_fps != null ? health.min_app_fps : 5, 0, " fps");
const hotC = health => fmtNum(health && health.hot_c != null ? health.hot_c : 80, 0, " °C");

// Why a device is degraded: a short label (with its reading when there is one) and what it means and what to do.
const REASONS = {
  slow: {
    label: hl => `too slow for the apps${hl && hl.fps != null ? ` (${fmtNum(hl.fps, 1, " fps")}, needs ${minFps(hl)})` : ""}`,
    explain: hl => `The apps analyse fewer than ${minFps(hl)}, the lowest rate at which falls were tested to be detected, so falls may be alerted late or missed. On the device's charts, a long pose model time means the processor is overloaded (fit an accelerator or use a lighter model); otherwise the camera delivers too few frames (check its cable and the room's lighting). Dropped frames alone are normal and not a problem.`,
  },
  warnings: {
    label: hl => `agent warnings${hl && hl.warnings && hl.warnings.length ? ` (${hl.warnings.map(w => w.replace(/_/g, " ")).join(", ")})` : ""}`,
    explain: () => "The agent reported a problem it works around (listed on the device's page). If the warnings persist, collect diagnostics from the Jobs page.",
  },
  accelerator_fallback: {
    label: () => "accelerator lost, running on the CPU",
    explain: () => "The accelerator the device is configured for failed or is missing, so the CPU runs the model instead, slower and hotter. Check that the accelerator is seated and powered, then reboot the device from the Jobs page.",
  },
  hot: {
    label: () => "running hot",
    explain: hl => `The processor or accelerator is at ${hotC(hl)} or more; it slows itself down and may stop. Check its ventilation: a covered case, a missing heat sink or fan, direct sun.`,
  },
};
const REASON_ORDER = ["slow", "warnings", "accelerator_fallback", "hot"];

// The reason's short label; a reason this console does not know (from a newer or older server) in its own words.
export function reasonText(reason, health) {
  const r = REASONS[reason];
  return r ? r.label(health) : String(reason).replace(/_/g, " ");
}

export function reasonHelp(reason, health) {
  const r = REASONS[reason];
  return r ? r.explain(health) : "Reported by the fleet server; see the device's health readings for more.";
}

export function stateText(state) {
  return STATES[state] ? STATES[state].label : String(state).replace(/_/g, " ");
}

export function stateHelp(state) {
  return STATES[state] ? STATES[state].explain : "";
}

// The explanations badges point at (aria-describedby), kept once in the document, outside the pages.
function describedBy(state) {
  const id = `state-help-${state}`;
  if (!document.getElementById(id)) {
    let box = document.getElementById("state-help");
    if (!box) document.body.appendChild(box = h("div", {id: "state-help", hidden: true}));
    box.appendChild(h("p", {id}, stateHelp(state)));
  }
  return id;
}

// A state's badge: its label; what it means as the badge's description (screen readers) and title (pointer).
export function stateBadge(state) {
  const el = badge(stateText(state), `state state-${state}`);
  if (STATES[state]) {
    el.title = stateHelp(state);
    el.setAttribute("aria-describedby", describedBy(state));
  }
  return el;
}

// A device's state in full, as visible text: the badge, what it means and what to do, and each degraded reason.
export function stateExplained(state, health) {
  const reasons = ["degraded", "updating"].includes(state) && health ? health.degraded || [] : [];
  return h("div", {class: "state-explained"}, stateBadge(state), h("p", {class: "state-help"}, stateHelp(state)),
    reasons.length ? h("ul", {class: "state-reasons", "aria-label": "Why it is degraded"}, reasons.map(r =>
      h("li", {dataset: {reason: r}}, h("strong", {}, reasonText(r, health)), `: ${reasonHelp(r, health)}`))) : null);
}

// The short reasons shown beside a degraded (or updating) device's badge in a list.
export function reasonsInline(state, health) {
  const reasons = ["degraded", "updating"].includes(state) && health ? health.degraded || [] : [];
  return reasons.length ? h("span", {class: "state-reasons-inline"}, reasons.map(r => reasonText(r, health)).join("; ")) : null;
}

// "What the states mean": every state and every degraded reason, in words (collapsed until opened).
export function stateLegend() {
  const dl = h("dl", {class: "state-legend"});
  for (const s of DISPLAY_STATES) dl.append(h("dt", {}, stateBadge(s)), h("dd", {}, stateHelp(s)));
  const reasons = h("dl", {class: "state-legend"});
  for (const r of REASON_ORDER) reasons.append(h("dt", {}, reasonText(r, null)), h("dd", {}, reasonHelp(r, null)));
  return h("details", {class: "state-legend-box"}, h("summary", {}, "What the states mean"), dl,
    h("h3", {}, "Why a device is degraded"), reasons);
}

// Devices whose rollout step is in progress count as updating (when the rollouts API is there); the steps are the
// server's IN_PROGRESS (fleet/ota/rollouts/state.py).
const UPDATE_STEPS = new Set(["downloading", "downloaded", "installed", "activated"]);
export async function updatingDevices() {
  const out = new Set();
  const data = await getOptional("/api/v1/rollouts").catch(() => null);
  const live = ((data && data.rollouts) || []).filter(r => ["running", "paused", "stopped", "rolling_back"].includes(r.status));
  const details = await Promise.all(live.map(r => get(`/api/v1/rollouts/${encodeURIComponent(r.id)}`).catch(() => null)));
  for (const r of details) {
    for (const dev of (r && r.devices) || []) if (UPDATE_STEPS.has(dev.status)) out.add(dev.device_id);
  }
  return out;
}

// The state a page shows for a device of the overview: the server's, or updating while a rollout step is in progress.
export function displayState(device, updating) {
  return updating.has(device.id) && ["online", "degraded"].includes(device.state) ? "updating" : device.state;
}
