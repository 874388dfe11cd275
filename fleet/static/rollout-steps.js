// A device's step in a rollout in plain words: offered, downloading, verifying, self-test (on trial), active,
// failed / rolled back / rejected because <the reason the device sent>, deferred (why); and whether the device
// counts as "updating" (the word the fleet page uses for it). The server sends each step's status, the device's
// reason code and the same reason in words (reason_text, deferred: fleet/ota/rollouts/view.py).
import {h, badge} from "./ui.js";

// The steps during which a device is taking the update: it shows as "updating" (as on the fleet page).
export const UPDATING = ["offered", "downloading", "downloaded", "installed", "rebooting", "activated"];

// Each status's short phase label and the badge tone it is shown with.
const PHASES = {
  pending: ["waiting", "idle"],
  offered: ["offered", "busy"],
  downloading: ["downloading", "busy"],
  downloaded: ["verifying (downloaded)", "busy"],
  installed: ["verifying (installed)", "busy"],
  rebooting: ["rebooting (new system)", "busy"],
  activated: ["self-test (on trial)", "busy"],
  healthy: ["active", "good"],
  failed: ["failed", "bad"],
  rejected: ["rejected", "bad"],
  rolled_back: ["rolled back", "bad"],
  canceled: ["withdrawn", "idle"],
};

export function phaseLabel(status) {
  return PHASES[status] ? PHASES[status][0] : String(status).replace(/_/g, " ");
}

// The device's reason in words: the server's wording, else the code made readable; never an object.
function because(d) {
  if (typeof d.reason_text === "string" && d.reason_text) return d.reason_text;
  if (typeof d.reason === "string" && d.reason) return d.reason.replace(/_/g, " ");
  return "no reason given";
}

const pct = p => (typeof p === "number" && Number.isFinite(p) ? ` (${Math.round(p * 100)}%)` : "");

// One sentence for the step the device is at (the rollout's version is `version`).
function words(d, version) {
  switch (d.status) {
    case "pending": return "waiting for its group to start";
    case "offered": return "offered; waiting for the device to fetch it";
    case "downloading": return `downloading the package${pct(d.progress)}`;
    case "downloaded": return "downloaded; verifying the package and self-testing the model";
    case "installed": return "verified and installed; waiting to restart into it";
    case "rebooting": return "installed in the inactive slot; rebooting into the new system once";
    case "activated":
      return Number.isFinite(d.done) && d.total
        ? `on trial: health check ${Math.min(d.done, d.total)} of ${d.total} frames`
        : "on trial: restarted into the new model, health check running";
    case "healthy": return d.reverting ? `back on ${d.version}` : `active: runs ${version}`;
    case "failed": return `failed because ${because(d)}`;
    case "rejected": return `rejected because ${because(d)}; it still runs its previous model`;
    case "rolled_back":
      return d.reverting ? `rolled back to ${d.version}` : `rolled back because ${because(d)}`;
    case "canceled": return `offer withdrawn because ${because(d)}`;
    default: return String(d.status).replace(/_/g, " ");
  }
}

// {label, tone, text, updating} for one device row of GET /api/v1/rollouts/{id}.
export function deviceStep(d, version) {
  const [label, tone] = PHASES[d.status] || [phaseLabel(d.status), "idle"];
  const updating = UPDATING.includes(d.status);
  let text = words(d, version);
  if (updating && typeof d.deferred === "string" && d.deferred) text += `; deferred: ${d.deferred}`;
  return {label, tone, text, updating};
}

// The device's state beside the rollout: "updating" while it takes the update (the fleet page's word).
export function stateCell(step, status) {
  if (step.updating) return badge("updating", "state-updating");
  if (status === "healthy") return h("span", {}, "updated");
  if (status === "pending") return h("span", {class: "muted"}, "not yet offered");
  return h("span", {class: "muted"}, "unchanged");
}

// The step's badge alone ("waiting", "active"): the sentence is said once, beside it (whyCell).
export function stepCell(step) {
  return h("span", {class: "step"}, badge(step.label, `step step-${step.tone}`));
}

// Why the device is there and what happens next: the server's explanation, else the step in words.
export function whyCell(d, step) {
  return h("span", {class: "explain"}, (typeof d.explain === "string" && d.explain) || step.text);
}

// The device as people know it: its name and room, its id small beneath (as on the fleet page).
export function deviceCell(id, known) {
  const link = h("a", {href: `#/devices/${encodeURIComponent(id)}`}, known && known.name ? known.name : id);
  if (!known || !known.name) return link;
  return h("span", {}, link, known.room ? ` (${known.room})` : "", h("br"), h("span", {class: "muted mono small-id"}, id));
}

// Who did it: "alice" for user:alice, "API token <id>" (or its name when the server gives one), "<who> (command line)",
// "enrollment token <id>", "device <id>" (also the audit log's actors).
export function actorWords(actor, name) {
  const s = String(actor || "");
  const [kind, rest] = s.includes(":") ? [s.slice(0, s.indexOf(":")), s.slice(s.indexOf(":") + 1)] : ["", s];
  if (kind === "user") return rest;
  if (kind === "apitoken") return name ? `API token “${name}”` : `API token ${rest}`;
  if (kind === "cli") return `${rest} (command line)`;
  if (kind === "token") return `enrollment token ${rest}`;
  if (kind === "device") return `device ${rest}`;
  if (kind === "system") return "the system";
  return s || "?";
}

// A group's counts ({status: n}) in phase words: "1 downloading, 2 active".
export function countsText(counts) {
  const merged = new Map();
  for (const [status, n] of Object.entries(counts || {})) {
    const label = phaseLabel(status);
    merged.set(label, (merged.get(label) || 0) + n);
  }
  return [...merged].map(([label, n]) => `${n} ${label}`).join(", ");
}
