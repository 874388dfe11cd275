// Users and roles: your password; for admins, accounts (role, enabled) and API tokens for automation.
import {can, get, post, patch, del, session} from "./api.js";
import {h, clear, field, fieldErrors, fmtTime, pageHeader, statusLine, actionButton, table, notice, keepFocus} from "./ui.js";

const ROLES = [["viewer", "viewer: sees everything, changes nothing"], ["operator", "operator: runs the fleet"],
  ["admin", "admin: also accounts, revocation, admin jobs"]];
const ROLE_WORDS = Object.fromEntries(ROLES);

// A role change is asked for first, saying what the account gains or loses.
function confirmRole(username, from, to) {
  const self = username === session.username ? " This is your own account: you lose what the new role cannot do." : "";
  return window.confirm(`Change ${username}'s role from ${from} to ${to}?\n\n${ROLE_WORDS[to]}.${self}`);
}

export async function render(root, ctx) {
  const {el: statusEl, report} = statusLine();
  root.append(pageHeader("Users and roles"), statusEl);

  // ---- own password -------------------------------------------------------------------------------------
  const current = field("Current password", "password", {autocomplete: "current-password", required: true});
  const next = field("New password (at least 12 characters)", "password", {autocomplete: "new-password", required: true, minLength: 12});
  const pw = h("form", {class: "card", "aria-labelledby": "pw-h"}, h("h2", {id: "pw-h"}, `Your password (${session.username}, ${session.role})`),
    h("div", {class: "row"}, current.wrap, next.wrap), h("button", {type: "submit"}, "Change password"));
  const pwProblems = fieldErrors({current_password: current, new_password: next});
  pw.addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      await post("/api/v1/session/password", {current_password: current.input.value, new_password: next.input.value});
      pwProblems.clear();
      report("Password changed; your other sessions were signed out.", "ok");
    } catch (err) {
      pwProblems.show(err.message);
      report(`Password not changed: ${err.message}`, "error");
    } finally { current.input.value = ""; next.input.value = ""; }
  });
  root.appendChild(pw);

  if (!can("admin")) {
    root.appendChild(notice("Managing accounts and API tokens needs the admin role."));
    return null;
  }

  // ---- accounts -----------------------------------------------------------------------------------------
  const usersOut = h("div");
  const name = field("User name", "text", {autocomplete: "off", required: true, pattern: "[a-z0-9][a-z0-9_.\\-]{0,63}"});
  const pass = field("Initial password (at least 12 characters)", "password", {autocomplete: "new-password", required: true});
  const role = field("Role", "select", {}, ROLES);
  const add = h("form", {class: "inline-form", "aria-label": "Add a user"}, name.wrap, pass.wrap, role.wrap, h("button", {type: "submit"}, "Add user"));
  root.appendChild(h("section", {class: "card", "aria-labelledby": "users-h"}, h("h2", {id: "users-h"}, "Accounts"), usersOut, add));
  const addProblems = fieldErrors({username: name, password: pass, role});
  add.addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      await post("/api/v1/operators", {username: name.input.value.trim(), password: pass.input.value, role: role.input.value});
      addProblems.clear();
      report(`User ${name.input.value.trim()} added.`, "ok");
      name.input.value = ""; pass.input.value = "";
      await refresh();
    } catch (err) { addProblems.show(err.message); report(`User not added: ${err.message}`, "error"); }
  });

  // ---- API tokens ---------------------------------------------------------------------------------------
  const tokensOut = h("div");
  const tname = field("Token name", "text", {autocomplete: "off", required: true});
  const trole = field("Role", "select", {}, ROLES);
  const tdays = field("Expires after (days, optional)", "number", {min: 1, max: 366});
  const shown = h("div", {"aria-live": "polite"});
  const tform = h("form", {class: "inline-form", "aria-label": "Create an API token"}, tname.wrap, trole.wrap, tdays.wrap,
    h("button", {type: "submit"}, "Create API token"));
  root.appendChild(h("section", {class: "card", "aria-labelledby": "apitokens-h"}, h("h2", {id: "apitokens-h"}, "API tokens"), tokensOut, tform, shown));
  const tokenProblems = fieldErrors({name: tname, role: trole, expires_in_seconds: tdays});
  tform.addEventListener("submit", async ev => {
    ev.preventDefault();
    const body = {name: tname.input.value.trim(), role: trole.input.value};
    if (tdays.input.value) body.expires_in_seconds = Math.round(Number(tdays.input.value) * 86400);
    try {
      const got = await post("/api/v1/api-tokens", body);
      tokenProblems.clear();
      report(`API token ${body.name} created: copy it now, it is shown once.`, "ok");
      clear(shown).append(h("p", {}, "New token (shown once): ", h("code", {class: "mono token"}, got.token)));
      tname.input.value = "";
      await refresh();
    } catch (err) { tokenProblems.show(err.message); report(`Token not created: ${err.message}`, "error"); }
  });

  async function refresh() {
    try {
      const [ops, toks] = await Promise.all([get("/api/v1/operators"), get("/api/v1/api-tokens")]);
      keepFocus(root, () => {
        clear(usersOut).appendChild(table([
          {label: "User", cell: o => o.username},
          {label: "Role", cell: o => {
            const sel = field(`Role of ${o.username}`, "select", {value: o.role}, ROLES.map(([v]) => [v, v]));
            sel.wrap.querySelector("label").className = "sr-only";
            sel.input.addEventListener("change", async () => {
              if (!confirmRole(o.username, o.role, sel.input.value)) {
                sel.input.value = o.role;
                report(`${o.username}'s role was not changed: still ${o.role}.`, "info");
                return;
              }
              try {
                await patch(`/api/v1/operators/${encodeURIComponent(o.username)}`, {role: sel.input.value});
                report(`${o.username} is now ${sel.input.value}.`, "ok");
                await refresh();
              } catch (err) { report(`Role not changed: ${err.message}`, "error"); sel.input.value = o.role; }
            });
            return sel.wrap;
          }},
          {label: "Enabled", cell: o => (o.disabled ? "disabled" : "enabled")},
          {label: "Last sign-in", cell: o => fmtTime(o.last_login_at)},
          {label: "Created", cell: o => `${fmtTime(o.created_at)} by ${o.created_by}`},
          {label: "", cell: o => actionButton(o.disabled ? "Enable" : "Disable", async () => {
            await patch(`/api/v1/operators/${encodeURIComponent(o.username)}`, {disabled: !o.disabled});
            await refresh();
            return `${o.username} ${o.disabled ? "enabled" : "disabled"}.`;
          }, {report, ariaLabel: `${o.disabled ? "Enable" : "Disable"} ${o.username}`})},
        ], ops.operators, {empty: "No accounts."}));
        clear(tokensOut).appendChild(table([
          {label: "Name", cell: t => t.name},
          {label: "Id", cell: t => h("span", {class: "mono"}, t.id)},
          {label: "Role", cell: t => t.role},
          {label: "Created", cell: t => `${fmtTime(t.created_at)} by ${t.created_by}`},
          {label: "Expires", cell: t => fmtTime(t.expires_at)},
          {label: "Last used", cell: t => fmtTime(t.last_used_at)},
          {label: "", cell: t => (t.revoked_at ? `revoked ${fmtTime(t.revoked_at)}` : actionButton("Revoke", async () => {
            await del(`/api/v1/api-tokens/${encodeURIComponent(t.id)}`);
            await refresh();
            return `API token ${t.name} revoked.`;
          }, {report, ariaLabel: `Revoke API token ${t.name}`}))},
        ], toks.api_tokens, {empty: "No API tokens."}));
      });
      report.settle("load");
    } catch (err) { report(`Cannot load accounts: ${err.message}`, "error", "load"); }
  }
  await refresh();
  return null;
}
