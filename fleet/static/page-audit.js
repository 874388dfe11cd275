// The audit log: who changed what and when, searchable, paged; admins can verify the hash chain.
import {can, get, query} from "./api.js";
import {h, clear, field, fmtTime, pageHeader, statusLine, table, notice, epochFromInput, actionButton} from "./ui.js";

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
    {label: "Actor", cell: e => e.actor},
    {label: "Action", cell: e => e.action},
    {label: "Target", cell: e => e.target},
    {label: "Details", cell: e => {
      const d = e.details && typeof e.details === "object" ? e.details : {};
      const text = Object.entries(d).filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("; ");
      return h("span", {class: "details"}, text || "—");
    }},
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
