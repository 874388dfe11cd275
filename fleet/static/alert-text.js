// How alerts read in the console: plain labels ("Fall", not "fall · fall"), the device's name, relative times
// ("4 min ago", "open for 12 min") beside the absolute ones, refreshed every minute wherever they are shown.
"use strict";
import {h, fmtTime} from "./ui.js";

// (app, type) -> label; a type alone when it means the same in every app.
const LABELS = {
  "fall/fall": "Fall",
  "fall/still_on_floor": "Still on the floor",
  "fall/resolved": "Got up or attended",
  "bed_exit/bed_exit": "Bed exit",
  "hand_hygiene/missed": "Hand hygiene missed",
  "hand_hygiene/opportunity": "Hand hygiene done",
  "hand_hygiene/unknown": "Hand hygiene unknown",
  "mask/no_mask": "No mask",
  "mask/mask_on": "Mask on",
  "mask/window_counts": "Mask counts",
  "occupancy/count_changed": "People count changed",
  "occupancy/zone_count_changed": "Zone count changed",
  "occupancy/patient_alone": "Patient alone",
  "occupancy/patient_attended": "Patient attended",
  "occupancy/over_capacity": "Over capacity",
  "occupancy/after_hours_visitor": "After-hours visitor",
  "system/device_offline": "Camera offline",
  "system/device_online": "Camera back online",
  "system/test_alert": "Test alert",
};

function humanize(text) {
  const s = String(text || "").replace(/_/g, " ").trim();
  return s ? s[0].toUpperCase() + s.slice(1) : "Alert";
}

// The plain label of an event type ("Fall", "Still on the floor"); unknown types read as words.
export function typeLabel(app, type) {
  return LABELS[`${app}/${type}`] || humanize(type || app);
}

export function alertLabel(a) { return typeLabel(a.app, a.type); }

// The device as people know it: its name, else its id.
export function deviceText(a) { return a.device_name || a.device_id || "unknown device"; }

// "critical fall in room 3B-12": for button names and announcements.
export function describe(a) {
  return `${a.severity || "info"} ${alertLabel(a).toLowerCase()} in room ${a.room || "?"}`;
}

// When an alert began: the server's arrival time (what "open for" counts from), else the device's.
export function startedAt(a) { return a.received_at ?? a.time ?? a.created_at ?? null; }

const now = () => Date.now() / 1000;

function span(seconds) {
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min`;
  const hours = Math.floor(m / 60);
  if (hours < 24) return m % 60 ? `${hours} h ${m % 60} min` : `${hours} h`;
  return `${Math.floor(hours / 24)} d`;
}

// "just now", "4 min ago", "2 h 5 min ago", "3 d ago".
export function relTime(epoch, at = now()) {
  if (epoch === null || epoch === undefined) return "";
  const s = Math.max(0, at - epoch);
  return s < 60 ? "just now" : `${span(s)} ago`;
}

// "open for under a minute", "open for 12 min".
export function openFor(epoch, at = now()) {
  if (epoch === null || epoch === undefined) return "";
  const s = Math.max(0, at - epoch);
  return s < 60 ? "open for under a minute" : `open for ${span(s)}`;
}

const FORMATS = {ago: relTime, open: openFor};

// A relative time that refreshTimes() keeps current: kind "ago" or "open".
export function relative(epoch, kind = "ago", cls = "rel") {
  if (epoch === null || epoch === undefined || Number.isNaN(Number(epoch))) return h("span", {class: cls});
  return h("span", {class: cls, dataset: {relEpoch: String(epoch), relKind: kind}}, FORMATS[kind](epoch));
}

// The absolute time with the relative one beside it: "12 Mar 2027, 14:02:31 (4 min ago)".
export function when(epoch) {
  if (epoch === null || epoch === undefined) return h("span", {}, "—");
  return h("span", {class: "when"}, h("time", {datetime: new Date(epoch * 1000).toISOString()}, fmtTime(epoch)),
    " (", relative(epoch), ")");
}

// Bring every relative time under `root` up to date (a timer calls it each minute).
export function refreshTimes(root = document) {
  const at = now();
  for (const el of root.querySelectorAll("[data-rel-epoch]")) {
    const text = (FORMATS[el.dataset.relKind] || relTime)(Number(el.dataset.relEpoch), at);
    if (el.textContent !== text) el.textContent = text;
  }
}

let ticker = null;

// Refresh relative times once a minute until stopTimes().
export function startTimes() {
  stopTimes();
  ticker = setInterval(() => refreshTimes(), 60000);
}

export function stopTimes() {
  if (ticker) { clearInterval(ticker); ticker = null; }
}

// An event's data in words ("held 1 s, descent 0.8 s"): known keys with their units, others as words.
const DATA_WORDS = {
  held_seconds: ["held", " s"], descent_s: ["descent", " s"], descent_speed: ["descent speed", " heights/s"],
  drop: ["drop", " body heights"], drop_heights: ["drop", " body heights"], seconds_down: ["down for", " s"],
  seconds_since_fall: ["since the fall", " s"], seconds_since_lying: ["lying for", " s"], torso_angle: ["torso angle", "°"],
  dwell_seconds: ["stayed", " s"], rub_seconds: ["hands rubbed", " s"], any_rub_seconds: ["any rubbing", " s"],
  opportunity_seconds: ["opportunity lasted", " s"], seconds_unmasked: ["unmasked for", " s"],
  window_seconds: ["over", " s"], count: ["people"], previous: ["before"], people_seen: ["people seen"],
};

function valueText(v, unit = "") {
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "number" && Number.isFinite(v)) return `${Number.isInteger(v) ? v : Number(v.toFixed(2))}${unit}`;
  if (Array.isArray(v)) return v.map(x => valueText(x, unit)).join(", ");
  return v === null || v === undefined ? "—" : String(v);
}

export function dataWords(data) {
  return Object.entries(data || {}).map(([k, v]) => {
    const [words, unit] = DATA_WORDS[k] || [k.replace(/_/g, " "), ""];
    return `${words} ${valueText(v, unit)}`;
  }).join(", ");
}
