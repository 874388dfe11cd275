// WardSight console: sign-in, the hash router and the pages (one module each under /static/).
// Every piece of data is rendered with textContent / DOM APIs; nothing is parsed as HTML.
import {session, can, get, post, del, setSignedOutHandler, setConnectionHandler, ApiError} from "./static/api.js";
import {clear, h} from "./static/ui.js";
import * as fleet from "./static/page-fleet.js";
import * as alerts from "./static/page-alerts.js";
import * as device from "./static/page-device.js";
import * as enroll from "./static/page-enroll.js";
import * as models from "./static/page-models.js";
import * as jobs from "./static/page-jobs.js";
import * as reports from "./static/page-reports.js";
import * as users from "./static/page-users.js";
import * as audit from "./static/page-audit.js";
import {startAlertWatch, stopAlertWatch, setPageTitle} from "./static/alert-banner.js";
import {startResponsive} from "./static/responsive.js";

const REFRESH_MS = Number(document.body.dataset.refreshMs) || 2000;
const ROUTES = {fleet, alerts, devices: device, enroll, models, jobs, reports, users, audit};

const $ = id => document.getElementById(id);
let cleanup = null;

function setStatus(text) { $("status").textContent = text; }

function showSignedIn(signedIn) {
  $("login").hidden = signedIn;
  $("nav").hidden = !signedIn;
  $("who").hidden = !signedIn;
  $("page").hidden = !signedIn;
  if (signedIn) {
    $("who-text").textContent = `${session.username} (${session.role})`;
    for (const li of document.querySelectorAll("[data-min-role]")) li.hidden = !can(li.dataset.minRole);
    startAlertWatch({badge: $("alert-count"), banner: $("alert-banner")});
    route();
  } else {
    if (cleanup) { cleanup(); cleanup = null; }
    stopAlertWatch();
    clear($("page"));
    setStatus("Sign in to see the fleet.");
    $("username").focus();
  }
}

function signedOut(reason) {
  session.username = session.role = session.csrf = null;
  showSignedIn(false);
  if (reason) setStatus(`Signed out: ${reason}`);
}
setSignedOutHandler(signedOut);

// Lost contact with the fleet server: a banner says since when; the page keeps its last data, greyed as stale,
// until a request succeeds again.
setConnectionHandler(({lostSince}) => {
  const banner = $("server-banner");
  const lost = lostSince !== null;
  $("page").classList.toggle("stale", lost);
  banner.hidden = !lost;
  if (lost) {
    const at = new Date(lostSince).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", hour12: false});
    banner.textContent = `Lost contact with the fleet server since ${at} — showing the last data`;
  } else {
    banner.textContent = "";
  }
});

function parseHash() {
  const raw = (location.hash || "#/fleet").replace(/^#\/?/, "");
  const [pathPart, queryPart] = raw.split("?");
  const parts = pathPart.split("/").filter(Boolean).map(decodeURIComponent);
  return {name: parts[0] || "fleet", args: parts.slice(1), params: new URLSearchParams(queryPart || "")};
}

async function route() {
  if (!session.role) return;
  if (cleanup) { try { cleanup(); } catch (_) { /* a page's teardown must not block the next */ } cleanup = null; }
  const {name, args, params} = parseHash();
  const page = ROUTES[name];
  const root = clear($("page"));
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.route === name || (name === "devices" && a.dataset.route === "fleet")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!page) {
    root.appendChild(h("h1", {tabIndex: -1, id: "page-title"}, "Not found"));
    root.appendChild(h("p", {}, "There is no such page. ", h("a", {href: "#/fleet"}, "Go to the fleet.")));
    return;
  }
  setStatus("");
  const ctx = {args, params, refreshMs: REFRESH_MS, setStatus};
  try {
    cleanup = (await page.render(root, ctx)) || null;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    root.appendChild(h("p", {class: "notice notice-error", role: "alert"}, `This page failed to load: ${err.message}`));
  }
  const title = $("page-title");
  setPageTitle(`${title ? title.textContent : "Console"} · WardSight`);  // prefixed while critical alerts are open
  if (title && document.activeElement !== $("username")) title.focus({preventScroll: true});
}

window.addEventListener("hashchange", route);
startResponsive($("page"));  // narrow screens: every page's tables as cards, each cell labelled with its column

$("login").addEventListener("submit", async ev => {
  ev.preventDefault();
  const body = {username: $("username").value, password: $("password").value};
  try {
    const who = await post("/api/v1/session", body);
    $("password").value = "";
    Object.assign(session, {username: who.username, role: who.role, csrf: who.csrf_token});
    if (!location.hash) location.hash = "#/fleet";
    showSignedIn(true);
  } catch (err) {
    $("password").value = "";
    setStatus(`Sign-in failed: ${err.message}`);
    $("password").focus();
  }
});

$("logout").addEventListener("click", async () => {
  try { await del("/api/v1/session"); } catch (_) { /* signed out either way */ }
  signedOut("");
  setStatus("Signed out.");
});

(async () => {
  try {
    const who = await get("/api/v1/session");
    if (who.csrf_token) {
      Object.assign(session, {username: who.username, role: who.role, csrf: who.csrf_token});
      showSignedIn(true);
      return;
    }
  } catch (_) { /* not signed in */ }
  showSignedIn(false);
})();
