// Open alerts on every page while signed in: the count in the navigation, and for each critical alert nobody has
// acknowledged yet a banner (what, which room, which camera, how long ago), the tab title ("(1) FALL room 3B-12 —
// ..."), an optional sound and desktop notification, and the rooms the fleet page marks (onCriticalAlerts).
// Fed by the alert stream (one EventSource per tab) and a poll: every 30 s with the stream, every 5 s when the
// server refused or ended it (429/503: EventSource closes for good); the stream is tried again each minute.
"use strict";
import {can, getOptional, post, query} from "./api.js";
import {h, clear} from "./ui.js";
import {alertLabel, deviceText, describe, relative, relTime, startedAt, typeLabel, startTimes, stopTimes}
  from "./alert-text.js";

const POLL_MS = 30000;
const FALLBACK_POLL_MS = 5000;
const STREAM_RETRY_MS = 60000;
const SHOWN = 3;  // banner lines; the rest are counted
export const SOUND_KEY = "wardsight.alerts.sound";
export const NOTIFY_KEY = "wardsight.alerts.notify";

const watch = {
  badge: null, banner: null, source: null, timer: null, live: false, lastLoad: 0, retryAt: 0,
  critical: [], known: null, listeners: new Set(), baseTitle: document.title, inflight: false, again: false,
  gone: false,
};

function stateOf(a) {
  if (a.state) return a.state;
  if (a.resolved_at) return "resolved";
  return a.acknowledged_at ? "acknowledged" : "open";
}

const lastSeen = a => a.last_seen_at ?? startedAt(a) ?? 0;

// ---- what other modules use ------------------------------------------------------------------------------------

// fn(list) now and whenever the open critical alerts change; returns the unsubscribe function.
export function onCriticalAlerts(fn) {
  watch.listeners.add(fn);
  fn(watch.critical);
  return () => watch.listeners.delete(fn);
}

// The page's own title; while critical alerts are open it is prefixed with them.
export function setPageTitle(base) {
  watch.baseTitle = base;
  applyTitle();
}

function applyTitle() {
  const top = watch.critical[0];
  document.title = top
    ? `(${watch.critical.length}) ${alertLabel(top).toUpperCase()} room ${top.room} — ${watch.baseTitle}`
    : watch.baseTitle;
}

// ---- preferences (this browser) --------------------------------------------------------------------------------

function pref(key) {
  try { return localStorage.getItem(key) === "on"; } catch (_) { return false; }
}

function setPref(key, on) {
  try { localStorage.setItem(key, on ? "on" : "off"); } catch (_) { /* private mode: for this page only */ }
}

let audio = null;

function audioContext() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return null;
  if (!audio) audio = new Ctx();
  if (audio.state === "suspended") audio.resume().catch(() => {});
  return audio;
}

// Three short tones (no sound file: nothing to fetch).
function chime() {
  const ctx = audioContext();
  if (!ctx) return;
  const t = ctx.currentTime;
  [880, 660, 880].forEach((freq, i) => {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    const start = t + i * 0.25;
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, start);
    gain.gain.exponentialRampToValueAtTime(0.3, start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.22);
    osc.connect(gain).connect(ctx.destination);
    osc.start(start);
    osc.stop(start + 0.24);
  });
}

function notifyDesktop(a) {
  if (!pref(NOTIFY_KEY) || !("Notification" in window) || Notification.permission !== "granted") return;
  try {
    const n = new Notification(`${alertLabel(a)}: room ${a.room}`, {
      body: `${deviceText(a)} · ${relTime(startedAt(a))}${a.count > 1 ? ` · ${a.count} events` : ""}`,
      tag: `wardsight-alert-${a.event_id}`, requireInteraction: true,
    });
    n.onclick = () => { window.focus(); location.hash = `#/alerts?room=${encodeURIComponent(a.room)}`; n.close(); };
  } catch (_) { /* a browser without page notifications (Android): the banner and title still show */ }
}

// Turning desktop notifications on asks the browser's permission (once: the browser remembers the answer).
async function toggleNotify(input, hint) {
  hint.textContent = "";
  if (!input.checked) { setPref(NOTIFY_KEY, false); return; }
  let permission = Notification.permission;
  if (permission === "default") {
    try { permission = await Notification.requestPermission(); } catch (_) { permission = "denied"; }
  }
  const granted = permission === "granted";
  input.checked = granted;
  setPref(NOTIFY_KEY, granted);
  if (!granted) hint.textContent = "Blocked by the browser: allow notifications for this site to turn them on.";
}

// ---- the banner ------------------------------------------------------------------------------------------------

function bannerLine(a) {
  const line = h("li", {dataset: {bannerAlert: String(a.event_id), room: a.room || ""}},
    h("strong", {class: "banner-what"}, alertLabel(a)), " in room ", h("strong", {}, a.room || "?"),
    ` · ${deviceText(a)} · `, relative(startedAt(a)));
  if (a.count > 1) {
    line.append(` · ${a.count} alerts, latest: ${typeLabel(a.app, a.last_type)} `, relative(lastSeen(a)));
  }
  const actions = h("span", {class: "banner-actions"},
    h("a", {href: `#/alerts?room=${encodeURIComponent(a.room || "")}`}, `See room ${a.room || "?"}`));
  if (can("operator")) {
    actions.appendChild(h("button", {type: "button", "aria-label": `Acknowledge ${describe(a)}`,
      onclick: ev => acknowledge(a, ev.currentTarget)}, "Acknowledge"));
  }
  line.append(" ", actions);
  return line;
}

function controls() {
  const sound = h("input", {type: "checkbox", id: "alert-sound", checked: pref(SOUND_KEY)});
  sound.addEventListener("change", () => {
    setPref(SOUND_KEY, sound.checked);
    if (sound.checked) audioContext();  // a click may start audio: unlock it now for later alerts
  });
  const wrap = h("div", {class: "banner-controls"},
    h("span", {class: "field-check"}, sound, h("label", {htmlFor: "alert-sound"}, "Sound")));
  if ("Notification" in window) {
    const hint = h("span", {class: "banner-hint", role: "status"});
    const notify = h("input", {type: "checkbox", id: "alert-notify",
      checked: pref(NOTIFY_KEY) && Notification.permission === "granted"});
    notify.addEventListener("change", () => toggleNotify(notify, hint));
    wrap.append(h("span", {class: "field-check"}, notify, h("label", {htmlFor: "alert-notify"}, "Desktop notifications")),
      hint);
  }
  return wrap;
}

function drawBanner() {
  const banner = watch.banner;
  if (!banner) return;
  const list = watch.critical;
  banner.hidden = list.length === 0;
  if (!banner.querySelector(".banner-controls")) banner.append(controls());
  const items = banner.querySelector(".banner-items");
  // A redraw must not throw the keyboard out: put the focus back on the same control of the same alert.
  const focused = document.activeElement;
  const line = focused && items.contains(focused) ? focused.closest("[data-banner-alert]") : null;
  const again = line ? `[data-banner-alert="${CSS.escape(line.dataset.bannerAlert)}"] ${focused.tagName.toLowerCase()}` : null;
  clear(items);
  items.append(h("p", {class: "banner-title", id: "alert-banner-title"},
    list.length === 1 ? "Critical alert" : `${list.length} critical alerts`, ", not acknowledged"));
  items.append(h("ul", {}, list.slice(0, SHOWN).map(bannerLine)));
  if (list.length > SHOWN) items.append(h("p", {}, h("a", {href: "#/alerts"}, `${list.length - SHOWN} more critical alerts`)));
  if (again) items.querySelector(again)?.focus();
}

async function acknowledge(a, button) {
  button.disabled = true;
  try {
    await post(`/api/v1/alerts/${encodeURIComponent(a.event_id)}/acknowledge`, {});
  } catch (err) {
    button.disabled = false;
    watch.banner.querySelector(".banner-hint")?.replaceChildren(`Could not acknowledge: ${err.message}`);
  }
  refresh();
}

function announce(fresh) {
  const a = fresh[0];
  const text = `New critical alert: ${alertLabel(a)} in room ${a.room}, ${deviceText(a)}`;
  const announcer = document.getElementById("critical-announcer");
  if (announcer && !document.getElementById("alert-announcer")) announcer.textContent = text;  // the alerts page says it
  if (pref(SOUND_KEY)) chime();
  for (const b of fresh) notifyDesktop(b);
}

// ---- loading ---------------------------------------------------------------------------------------------------

async function load() {
  const data = await getOptional(`/api/v1/alerts${query({state: "open", limit: 200})}`);
  if (data === null) { watch.gone = true; watch.badge.hidden = true; return; }
  const open = (data.alerts || []).filter(a => stateOf(a) === "open");
  watch.badge.textContent = String(open.length);
  watch.badge.setAttribute("aria-label", `${open.length} open alerts`);
  watch.badge.hidden = open.length === 0;
  const critical = open.filter(a => a.severity === "critical").sort((x, y) => lastSeen(y) - lastSeen(x));
  const known = watch.known;
  watch.known = new Map(critical.map(a => [a.event_id, a.count || 1]));
  watch.critical = critical;
  drawBanner();
  applyTitle();
  for (const fn of watch.listeners) fn(critical);
  const fresh = known ? critical.filter(a => (known.get(a.event_id) ?? 0) < (a.count || 1)) : [];
  if (fresh.length) announce(fresh);
}

// One load at a time; asks during a load make one more after it.
export async function refresh() {
  if (!watch.badge || watch.gone) return;
  if (watch.inflight) { watch.again = true; return; }
  watch.inflight = true;
  try {
    do {
      watch.again = false;
      watch.lastLoad = Date.now();
      try { await load(); } catch (_) { /* offline for a moment: the next tick tries again */ }
    } while (watch.again && watch.badge);
  } finally { watch.inflight = false; }
}

function setLive(live) {
  watch.live = live;
  document.documentElement.dataset.alertStream = live ? "live" : "polling";
}

function openStream() {
  if (watch.gone) return;
  try {
    const source = new EventSource("/api/v1/alerts/stream");
    watch.source = source;
    source.addEventListener("open", () => { setLive(true); refresh(); });
    source.addEventListener("message", () => refresh());
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED) { setLive(false); return; }  // it reconnects by itself
      source.close();
      if (watch.source === source) watch.source = null;
      setLive(false);
      watch.retryAt = Date.now() + STREAM_RETRY_MS;
    });
  } catch (_) { setLive(false); }
}

function tick() {
  if (Date.now() - watch.lastLoad >= (watch.live ? POLL_MS : FALLBACK_POLL_MS)) refresh();
  if (!watch.source && !watch.gone && Date.now() >= watch.retryAt) openStream();
}

export function startAlertWatch({badge, banner}) {
  stopAlertWatch();
  Object.assign(watch, {badge, banner, known: null, gone: false, retryAt: 0});
  setLive(false);
  startTimes();
  // Browsers start audio only after a gesture: with the sound on, the first click or key on the page unlocks it.
  for (const kind of ["pointerdown", "keydown"]) {
    document.addEventListener(kind, () => { if (pref(SOUND_KEY)) audioContext(); }, {once: true, capture: true});
  }
  refresh().then(() => {
    if (watch.badge !== badge || watch.gone) return;
    openStream();
    watch.timer = setInterval(tick, FALLBACK_POLL_MS);
  });
}

export function stopAlertWatch() {
  if (watch.source) { watch.source.close(); watch.source = null; }
  if (watch.timer) { clearInterval(watch.timer); watch.timer = null; }
  stopTimes();
  watch.badge = null;
  watch.critical = [];
  if (watch.banner) { watch.banner.hidden = true; clear(watch.banner.querySelector(".banner-items")); }
  applyTitle();
  for (const fn of watch.listeners) fn([]);
}
