// The audit log: who changed what and when, searchable, paged; admins can verify the hash chain.
import {can, get, query} from "./api.js";
import {h, clear, field, fmtTime, pageHeader, statusLine, table, notice, epochFromInput, actionButton} from "./ui.js";
import {actorWords} from "./rollout-steps.js";

// Details as "key: value" lines (nested objects indented under their key), epoch times as dates, long lists cut.
const TIME_KEY = /(^|_)(at|time|since|until|before|after|expires)$/;
const MAX_ITEMS = 20;

function scalarWords(key, v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "number" && TIME_KEY.test(key) && v > 1e9 && v < 1e11) return fmtTime(v);
  return String(v);
}

function listWords(key, list) {
  const shown = list.slice(0, MAX_ITEMS).map(v => scalarWords(key, v)).join(", ");
  return list.length > MAX_ITEMS ? `${shown} and ${list.length - MAX_ITEMS} more` : shown || "none";
}

export function detailsList(details, depth = 0) {
  const items = Object.entries(details).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => {
    const label = h("span", {class: "k"}, `${k.replace(/_/g, " ")}: `);
    if (Array.isArray(v) && v.some(x => x && typeof x === "object")) {
      const objects = v.slice(0, MAX_ITEMS).map(x => (x && typeof x === "object" && depth < 4
        ? h("li", {}, detailsList(x, depth + 1)) : h("li", {}, scalarWords(k, x))));
      const more = v.length > MAX_ITEMS ? h("li", {}, `and ${v.length - MAX_ITEMS} more`) : null;
      return h("li", {}, label, h("ul", {class: "audit-details"}, objects, more));
    }
    if (Array.isArray(v)) return h("li", {}, label, listWords(k, v));
    if (typeof v === "object") {
      return h("li", {}, label, depth < 4 ? detailsList(v, depth + 1) : "…");
    }
    return h("li", {}, label, scalarWords(k, v));
  });
  return items.length ? h("ul", {class: "audit-details"}, items) : h("span", {class: "muted"}, "—");
}

export async function render(root, ctx) {
  const {el: statusEl, report} = statusLine();
  root.append(pageHeader("Audit log"), statusEl);
  if (!can("operator")) { root.appendChild(notice("The audit log needs the operator role.")); return null; }
  const q = field("Search text", "search", {autocomplete: "off", placeholder: "anything in the entry"});
  const actor = field("Actor", "text", {autocomplete: "off", placeholder: "e.g. user:alice"});
  const action = field("Action", "text", {autocomplete: "off", placeholder: "e.g. device.quarantine"});
  const since = field("Since", "datetime-local");
  const until = field("Until", "datetime-local");
  const form = h("form", {class: "card filters", role: "search", "aria-label": "Search the audit log"},
    q.wrap, actor.wrap, action.wrap, since.wrap, until.wrap, h("button", {type: "submit", class: "primary"}, "Search"));
  const out = h("div");
  const more = h("button", {type: "button", hidden: true}, "Older entries");
  const verifyOut = h("p", {"aria-live": "polite"});
  root.append(form, out, more);
  if (can("admin")) {
    root.append(h("p", {}, actionButton("Verify the hash chain", async () => {
      const v = await get("/api/v1/audit/verify");
      verifyOut.textContent = v.ok ? `The chain is intact: ${v.checked} entries, head ${v.head_hash}.`
        : `The chain is broken at entry ${v.first_bad_seq}: ${v.reason}.`;
      verifyOut.className = v.ok ? "status-ok" : "status-error";
      return null;
    }, {report})), verifyOut);
  }
  for (const [k, f] of [["q", q], ["actor", actor], ["action", action]]) if (ctx.params.get(k)) f.input.value = ctx.params.get(k);

  const columns = [
    {label: "#", cell: e => String(e.seq)},
    {label: "Time", cell: e => fmtTime(e.time)},
    {label: "Actor", cell: e => h("span", {}, actorWords(e.actor), e.actor && actorWords(e.actor) !== e.actor
      ? [h("br"), h("span", {class: "muted mono"}, e.actor)] : null)},  // the raw form is what the Actor filter takes
    {label: "Action", cell: e => e.action},
    {label: "Target", cell: e => e.target},
    {label: "Details", cls: "details", cell: e => detailsList(e.details && typeof e.details === "object" ? e.details : {})},
  ];
  let entries = [];
  let next = null;
  const tbl = table(columns, [], {caption: "Audit entries, newest first"});
  out.appendChild(tbl);

  async function load(append) {
    const params = {q: q.input.value.trim(), actor: actor.input.value.trim(), action: action.input.value.trim(),
      since: epochFromInput(since.input.value), until: epochFromInput(until.input.value), limit: 100,
      before: append ? next : null};
    try {
      const data = await get(`/api/v1/audit${query(params)}`);
      entries = append ? entries.concat(data.entries) : data.entries;
      next = data.next_before;
      const body = tbl.querySelector("tbody");
      const fresh = table(columns, entries, {caption: "Audit entries, newest first", empty: "No entries match."});
      body.replaceWith(fresh.querySelector("tbody"));
      more.hidden = next === null || next === undefined;
      report(`${entries.length} entr${entries.length === 1 ? "y" : "ies"} shown.`, "ok");
    } catch (err) {
      report(`Search failed: ${err.message}`, "error");
    }
  }
  form.addEventListener("submit", ev => { ev.preventDefault(); load(false); });
  more.addEventListener("click", () => load(true));
  await load(false);
  return null;
}
