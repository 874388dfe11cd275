// Enrollment: one-time tokens (with a QR code and the bundle file), pending devices to approve, quarantine, revoke.
import {can, get, post, del, request} from "./api.js";
import {h, clear, field, fmtTime, pageHeader, statusLine, actionButton, table, notice, downloadBlob, keepFocus} from "./ui.js";
import {stateBadge} from "./page-fleet.js";

const IDENT = "[A-Za-z0-9][A-Za-z0-9_.:\\-]{0,63}";

// The server's SVG, parsed as XML and imported node by node (no HTML parsing; the CSP allows no <img>).
async function qrNode(text) {
  const resp = await request("POST", "/api/v1/console/qr", {text}, {raw: true});
  const doc = new DOMParser().parseFromString(await resp.text(), "image/svg+xml");
  const svg = doc.documentElement;
  if (svg.nodeName !== "svg") throw new Error("the server's QR code is not SVG");
  for (const s of svg.querySelectorAll("script, foreignObject")) s.remove();
  const node = document.importNode(svg, true);
  node.setAttribute("role", "img");
  node.setAttribute("aria-label", "QR code of the enrollment bundle");
  node.classList.add("qr");
  // The viewBox counts modules (quiet zone included): enroll.css gives each module 4 px, less when the
  // container is narrower, so the code is always shown whole. A CSSOM custom property, which the CSP allows.
  const modules = node.viewBox && node.viewBox.baseVal ? node.viewBox.baseVal.width : 0;
  if (modules > 0) node.style.setProperty("--qr-modules", String(modules));
  return node;
}

export async function render(root, ctx) {
  const {el: statusEl, report} = statusLine();
  root.append(pageHeader("Enrollment"), statusEl);
  if (!can("operator")) {
    root.appendChild(notice("Enrollment needs the operator role."));
    return null;
  }

  // ---- create a token ---------------------------------------------------------------------------------
  const site = field("Site (optional)", "text", {pattern: IDENT, autocomplete: "off"});
  const ward = field("Ward (optional)", "text", {pattern: IDENT, autocomplete: "off"});
  const room = field("Room", "text", {pattern: IDENT, required: true, autocomplete: "off"});
  const ttl = field("Valid for (minutes)", "number", {min: 1, max: 43200, value: "60"});
  const approval = field("New device waits for approval", "checkbox");
  const created = h("div", {class: "token-out", "aria-live": "polite"});
  const form = h("form", {class: "card", "aria-labelledby": "token-h"}, h("h2", {id: "token-h"}, "Create an enrollment token"),
    h("div", {class: "row"}, site.wrap, ward.wrap, room.wrap, ttl.wrap), approval.wrap,
    h("button", {type: "submit", class: "primary"}, "Create token"), created);
  root.appendChild(form);

  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const body = {room: room.input.value.trim(), ttl_seconds: Math.round(Number(ttl.input.value || 60) * 60),
      require_approval: approval.input.checked};
    if (site.input.value.trim()) body.site = site.input.value.trim();
    if (ward.input.value.trim()) body.ward = ward.input.value.trim();
    clear(created);
    let tok;
    try {
      tok = await post("/api/v1/tokens", body);
    } catch (err) {
      report(`The token was refused: ${err.message}`, "error");
      return;
    }
    report(`Token ${tok.id} created for room ${tok.room}. It is shown once: download the bundle now.`, "ok");
    let info = {server_url: location.origin, ca_pem: null, insecure_http: location.protocol === "http:"};
    try { info = await get("/api/v1/console/bundle-ca"); } catch (_) { /* the page's own origin, no CA */ }
    const bundle = {server_url: info.server_url, token: tok.token};
    if (info.ca_pem) bundle.ca_pem = info.ca_pem;
    if (info.insecure_http) bundle.insecure_http = true;
    if (info.tuf_root) bundle.tuf_root = info.tuf_root;  // the OTA repository's root of trust
    const text = JSON.stringify(bundle, null, 2);
    const qrBox = h("div", {class: "qr-box"});
    created.append(
      h("p", {}, "Token (shown once): ", h("code", {class: "mono token", id: "new-token"}, tok.token)),
      h("p", {class: "muted"}, `Expires ${fmtTime(tok.expires_at)}${tok.require_approval ? "; the device will wait for approval" : ""}.`),
      h("p", {}, h("button", {type: "button", class: "primary", id: "download-bundle",
        onclick: () => downloadBlob(`wardsight-bundle-${tok.room}.json`, `${text}\n`)}, "Download the bundle file"),
        " ", h("span", {class: "muted"}, "Copy it to the device's SD card, then run wardsight device enroll --bundle.")),
      qrBox);
    if (!info.ca_pem && !info.insecure_http) created.appendChild(notice("The server did not give its CA certificate: the bundle has none.", "error"));
    try {
      qrBox.appendChild(await qrNode(JSON.stringify(bundle)));
      const parts = ["server", "token", info.ca_pem ? "CA certificate" : null, info.tuf_root ? "update root" : null];
      qrBox.appendChild(h("p", {class: "muted"}, `The QR code holds the whole bundle (${parts.filter(Boolean).join(", ")}): `
        + "scan it from the screen, or use the bundle file above."));
    } catch (err) {
      qrBox.appendChild(notice(`No QR code: ${err.message}`, "error"));
    }
    await refresh();
  });

  // ---- tokens, pending devices, all devices ---------------------------------------------------------
  const tokensOut = h("div");
  const pendingOut = h("div");
  const devicesOut = h("div");
  root.append(
    h("section", {class: "card", "aria-labelledby": "tokens-h"}, h("h2", {id: "tokens-h"}, "Unused tokens"), tokensOut),
    h("section", {class: "card", "aria-labelledby": "pending-h"}, h("h2", {id: "pending-h"}, "Devices waiting for approval"), pendingOut),
    h("section", {class: "card", "aria-labelledby": "devices-h"}, h("h2", {id: "devices-h"}, "Quarantine and revoke"), devicesOut));

  const deviceAction = (d, label, path, role, confirmText) => (can(role)
    ? actionButton(label, async () => {
      await post(`/api/v1/devices/${encodeURIComponent(d.id)}/${path}`, {});
      await refresh();
      return `${d.id}: ${label.toLowerCase()} done.`;
    }, {report, ariaLabel: `${label} ${d.name || d.id}`, confirmText})
    : null);

  async function refresh() {
    try {
      const [tokens, devices] = await Promise.all([get("/api/v1/tokens"), get("/api/v1/devices")]);
      keepFocus(root, () => draw(tokens, devices));
    } catch (err) {
      report(`Cannot load tokens and devices: ${err.message}`, "error");
    }
  }
  function draw(tokens, devices) {
    {
      clear(tokensOut).appendChild(table([
        {label: "Token", cell: t => h("span", {class: "mono"}, t.id)},
        {label: "Scope", cell: t => `${t.site || "—"} / ${t.ward || "—"} / ${t.room}`},
        {label: "Approval", cell: t => (t.require_approval ? "required" : "no")},
        {label: "Created", cell: t => `${fmtTime(t.created_at)}${t.created_by ? ` by ${t.created_by}` : ""}`},
        {label: "Expires", cell: t => fmtTime(t.expires_at)},
        {label: "", cell: t => actionButton("Revoke", async () => {
          await del(`/api/v1/tokens/${encodeURIComponent(t.id)}`);
          await refresh();
          return `Token ${t.id} revoked.`;
        }, {report, ariaLabel: `Revoke token ${t.id}`})},
      ], tokens.tokens, {empty: "No unused tokens."}));
      const pending = devices.devices.filter(d => d.status === "pending");
      clear(pendingOut).appendChild(table([
        {label: "Device", cell: d => h("a", {href: `#/devices/${encodeURIComponent(d.id)}`}, d.name || d.id)},
        {label: "Room", cell: d => `${d.site || "—"} / ${d.ward || "—"} / ${d.room}`},
        {label: "Enrolled", cell: d => fmtTime(d.enrolled_at)},
        {label: "", cell: d => h("span", {class: "actions"}, deviceAction(d, "Approve", "approve", "operator"),
          deviceAction(d, "Quarantine", "quarantine", "operator"),
          deviceAction(d, "Revoke", "revoke", "admin", `Revoke ${d.id}?`))},
      ], pending, {empty: "No device is waiting."}));
      const others = devices.devices.filter(d => d.status !== "pending");
      clear(devicesOut).appendChild(table([
        {label: "Device", cell: d => h("a", {href: `#/devices/${encodeURIComponent(d.id)}`}, d.name || d.id)},
        {label: "Room", cell: d => `${d.site || "—"} / ${d.ward || "—"} / ${d.room}`},
        {label: "Enrollment status", cell: d => stateBadge(d.status)},
        {label: "", cell: d => h("span", {class: "actions"},
          d.status === "active" ? deviceAction(d, "Quarantine", "quarantine", "operator") : null,
          d.status === "quarantined" ? deviceAction(d, "Release", "release", "operator") : null,
          d.status !== "revoked" ? deviceAction(d, "Revoke", "revoke", "admin", `Revoke ${d.id}? It must enroll again.`) : null)},
      ], others, {empty: "No enrolled devices."}));
    }
  }
  await refresh();
  const timer = setInterval(refresh, Math.max(ctx.refreshMs, 3000));
  return () => clearInterval(timer);
}
