// Jobs in words: kinds, targets and parameters as a person reads them ("3 devices: cam-3b12 (3B-12), ...",
// "log level debug for 30 minutes"), never as JSON.
"use strict";

// Harmless kinds first (the start form defaults to the first); a disruptive kind says what it does, and starting
// it asks for a confirmation that names the devices.
export const KINDS = [
  {kind: "collect_diagnostics", label: "Collect diagnostics", role: "operator"},
  {kind: "self_test", label: "Self-test", role: "operator"},
  {kind: "set_log_level", label: "Set the log level for a while", role: "operator"},
  {kind: "restart_agent", label: "Restart the agent", role: "operator",
    disruptive: "The agent restarts: detection and alerts stop for a few seconds."},
  {kind: "push_config", label: "Push a configuration (device.toml)", role: "operator",
    disruptive: "It replaces the device's configuration and restarts the agent."},
  {kind: "reboot", label: "Reboot", role: "admin",
    disruptive: "The device reboots: no detection and no alerts for about a minute."},
  {kind: "rotate_key", label: "Rotate the device key", role: "admin",
    disruptive: "The device gets a new key; a device that cannot complete it must enroll again."},
  {kind: "factory_reset", label: "Factory reset (the device must enroll again)", role: "admin",
    disruptive: "It erases the device's identity and configuration: it stops until enrolled again."},
];
const BY_KIND = Object.fromEntries(KINDS.map(k => [k.kind, k]));

export const kindInfo = kind => BY_KIND[kind] || {kind, label: kind, role: "operator"};
export const kindLabel = kind => kindInfo(kind).label;

const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

// "cam-3b12 (3B-12)": the device's name (its id when it has none) and its room.
export function deviceWords(d) {
  const name = d.device_name || d.name || d.device_id || d.id;
  return d.room ? `${name} (${d.room})` : name;
}

// "3 devices: cam-3b12 (3B-12), cam-3b14 (3B-14) and cam-4a02 (4A-02)"; past `max`, "... and 12 more".
export function devicesWords(devices, max = 8) {
  const names = devices.slice(0, max).map(deviceWords);
  const more = devices.length - names.length;
  const list = more > 0 ? `${names.join(", ")} and ${more} more`
    : names.length > 1 ? `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}` : names.join("");
  return `${plural(devices.length, "device")}${names.length ? `: ${list}` : ""}`;
}

// "30 minutes", "1 hour 30 minutes", "45 seconds".
export function durationWords(seconds) {
  const s = Math.round(Number(seconds));
  if (!Number.isFinite(s)) return "an unknown time";
  if (s < 60 || s % 60) return plural(s, "second");
  const h = Math.floor(s / 3600);
  const m = (s % 3600) / 60;
  return [h ? plural(h, "hour") : "", m ? plural(m, "minute") : ""].filter(Boolean).join(" ");
}

function selectionWords(target) {
  const parts = [];
  if (target.site) parts.push(`site ${target.site}`);
  if (target.ward) parts.push(`ward ${target.ward}`);
  if (target.room) parts.push(`room ${target.room}`);
  if (target.tags && target.tags.length) parts.push(`tagged ${target.tags.join(" and ")}`);
  return parts.length ? `the active devices in ${parts.join(", ")}` : "";
}

// The batch's target: what was asked for and which devices it reached. `jobs` (the batch page) name the
// devices; without them (the list) `count` says how many.
export function targetWords(target, jobs, count) {
  const t = target || {};
  const selection = selectionWords(t);
  const reached = jobs ? devicesWords(jobs) : plural(count ?? 0, "device");
  const listed = t.device_ids || [];
  const have = new Set((jobs || []).map(j => j.device_id));
  const skipped = jobs ? listed.filter(id => !have.has(id)) : [];
  const skippedText = skipped.length
    ? `; ${plural(skipped.length, "chosen device was", "chosen devices were")} not active and skipped (${skipped.join(", ")})` : "";
  if (!selection) return `${reached}${skippedText}`;
  return `${listed.length ? "chosen devices among " : ""}${selection}: ${reached}${skippedText}`;
}

// The job's parameters: "log level debug for 30 minutes, then back to the configured level".
export function paramsWords(kind, params, configSha) {
  const p = params || {};
  if (kind === "set_log_level") {
    return `log level ${p.level || "?"} for ${durationWords(p.duration_s ?? 900)}, then back to the configured level`;
  }
  if (kind === "push_config") {
    const what = p.merge === "zones" ? "zones and privacy regions, merged into each device's own configuration"
      : "a whole configuration file (device.toml) replacing each device's";
    return configSha ? `${what} (sha256 ${configSha.slice(0, 12)}…)` : what;
  }
  const keys = Object.keys(p);
  return keys.length ? keys.map(k => `${k.replace(/_/g, " ")} ${p[k]}`).join(", ") : "none";
}

// ---- diagnostics keys in words ("cpu_temp_c" -> "CPU temperature", value with its unit) ----------------------
const DIAG_KEYS = {
  device_id: ["Device id"], name: ["Name"], room: ["Room"], site: ["Site"], ward: ["Ward"],
  server_url: ["Fleet server address"], device_time: ["Device clock"], server_time: ["Server clock"],
  clock_offset_s: ["Clock offset", " s"], wardsight: ["WardSight version"], python: ["Python version"],
  platform: ["Platform"], model: ["Model"], v: ["Report format"], sent_at: ["Sent at"], uptime_s: ["Running for"],
  agent_version: ["Agent version"], accelerator: ["Accelerator"], accelerator_configured: ["Accelerator configured"],
  cpu_temp_c: ["CPU temperature", " °C"], accelerator_temp_c: ["Accelerator temperature", " °C"],
  mem_used_mb: ["Memory used", " MB"], mem_total_mb: ["Memory installed", " MB"], fps: ["Frame rate", " fps"],
  min_app_fps: ["Lowest frame rate the apps need", " fps"], frames_processed: ["Frames analysed"],
  frames_dropped: ["Frames dropped"], outbox_pending: ["Events waiting to be sent"], warnings: ["Warnings"],
  updates: ["Over-the-air updates"], privacy_mode: ["Privacy mode"], load_avg: ["Load average (1, 5, 15 min)"],
  disk_free_mb: ["Free disk space", " MB"],
};
// Dotted keys whose last part is a name ("models.pose_net" -> "Model pose_net").
const DIAG_GROUPS = {models: ["Model", ""], stage_ms: ["Time in stage", " ms"]};

const words = key => {
  const s = key.replace(/_/g, " ").replace(/\./g, " › ");
  return s ? s[0].toUpperCase() + s.slice(1) : s;
};

// {label, unit, seconds} for a key of the diagnostics output.
export function diagKey(key) {
  if (DIAG_KEYS[key]) return {label: DIAG_KEYS[key][0], unit: DIAG_KEYS[key][1] || "", seconds: key === "uptime_s"};
  const dot = key.indexOf(".");
  const group = dot > 0 ? DIAG_GROUPS[key.slice(0, dot)] : null;
  if (group) return {label: `${group[0]} ${key.slice(dot + 1)}`, unit: group[1], seconds: false};
  return {label: words(key), unit: /_s$/.test(key) ? " s" : "", seconds: false};
}

// "3 h 12 min", "45 s": how long, from seconds.
export function spanWords(seconds) {
  const s = Math.round(Number(seconds));
  if (!Number.isFinite(s)) return String(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hr = Math.floor(m / 60);
  return hr < 48 ? `${hr} h ${m % 60} min` : `${Math.floor(hr / 24)} d ${hr % 24} h`;
}
