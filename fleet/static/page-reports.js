// Reports: hand-hygiene compliance, occupancy, falls and bed exits per room, ward or shift over a period; CSV.
import {getOptional, query} from "./api.js";
import {h, clear, field, pageHeader, statusLine, objectTable, unavailable, inputFromEpoch, epochFromInput} from "./ui.js";

const KINDS = [["hygiene", "Hand-hygiene compliance"], ["occupancy", "Occupancy"], ["falls", "Falls and bed exits"]];
const GROUPS = [["room", "Room"], ["ward", "Ward"], ["shift", "Shift"]];

function rowsOf(data) {
  if (Array.isArray(data)) return data;
  return data.rows || data.groups || data.report || data.items || [];
}

export async function render(root, ctx) {
  const {el: statusEl, report} = statusLine();
  const now = Date.now() / 1000;
  const kind = field("Report", "select", {}, KINDS);
  const group = field("Group by", "select", {}, GROUPS);
  const from = field("From", "datetime-local", {value: inputFromEpoch(now - 7 * 86400), required: true});
  const to = field("To", "datetime-local", {value: inputFromEpoch(Math.ceil(now / 60) * 60 + 60), required: true});
  const csv = h("a", {class: "button", id: "report-csv", download: "report.csv", href: "#"}, "Download CSV");
  const out = h("div", {"aria-live": "polite"});
  const form = h("form", {class: "card filters", "aria-label": "Report period and grouping"},
    kind.wrap, group.wrap, from.wrap, to.wrap, h("button", {type: "submit", class: "primary"}, "Show"), csv);
  root.append(pageHeader("Reports"), statusEl, form, out);

  for (const [k, f] of [["kind", kind], ["group", group]]) if (ctx.params.get(k)) f.input.value = ctx.params.get(k);

  function params(format) {
    return query({from: epochFromInput(from.input.value), to: epochFromInput(to.input.value), group: group.input.value, format});
  }

  function updateLink() {
    const name = `wardsight-${kind.input.value}-per-${group.input.value}.csv`;
    csv.href = `/api/v1/reports/${kind.input.value}${params("csv")}`;
    csv.download = name;
    csv.setAttribute("aria-label", `Download the ${KINDS.find(k => k[0] === kind.input.value)[1]} report per ${group.input.value} as CSV`);
  }

  async function show() {
    updateLink();
    const f = epochFromInput(from.input.value), t = epochFromInput(to.input.value);
    if (f === null || t === null || f >= t) { report("The period needs a start before its end.", "error"); return; }
    clear(out);
    try {
      const data = await getOptional(`/api/v1/reports/${kind.input.value}${params("json")}`);
      if (data === null) {
        out.appendChild(unavailable("Reports", `GET /api/v1/reports/${kind.input.value}`));
        csv.hidden = true;
        return;
      }
      csv.hidden = false;
      const rows = rowsOf(data);
      const title = `${KINDS.find(k => k[0] === kind.input.value)[1]} per ${group.input.value}, ${from.input.value.replace("T", " ")} to ${to.input.value.replace("T", " ")}`;
      out.appendChild(objectTable(rows, {caption: title, empty: "No data in this period."}));
      if (data.totals && typeof data.totals === "object") out.appendChild(objectTable([data.totals], {caption: "Totals"}));
      report(`${rows.length} row(s).`, "ok");
    } catch (err) {
      report(`The report failed: ${err.message}`, "error");
    }
  }
  form.addEventListener("submit", ev => { ev.preventDefault(); show(); });
  for (const f of [kind, group, from, to]) f.input.addEventListener("change", updateLink);
  await show();
  return null;
}
