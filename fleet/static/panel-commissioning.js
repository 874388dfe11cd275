// The device page's commissioning panel: is this device ready for the ward? Each check green (ok), red
// (failing) or grey (unknown) with its reason, and "Send test alert" for operators. Text only, no images.
import {can, get, post, ApiError} from "./api.js";
import {h, clear, badge, keepFocus} from "./ui.js";

const LABELS = {ok: "OK", failing: "Failing", unknown: "Unknown"};
const OVERALL = {
  ok: "Ready: every commissioning check holds.",
  failing: "Not ready: fix the failing checks below.",
  unknown: "Not ready yet: some checks cannot be decided yet.",
};

function checkItem(check) {
  return h("li", {class: `check check-${check.status}`, dataset: {check: check.id, status: check.status}},
    badge(LABELS[check.status] || check.status, `check-badge check-${check.status}`), " ",
    h("strong", {}, check.title), h("span", {class: "check-reason"}, check.reason));
}

// Returns {el, refresh}; `timers` collects the page's intervals (cleared when the page is left).
export function commissioningPanel(deviceId, {report, timers, refreshMs}) {
  const path = `/api/v1/devices/${encodeURIComponent(deviceId)}/commissioning`;
  const summary = h("p", {class: "check-summary", role: "status", "aria-live": "polite"}, "Loading the checks…");
  const list = h("ul", {class: "checks", "aria-label": "Commissioning checks"});
  const button = h("button", {type: "button", class: "primary"}, "Send test alert");
  const note = h("p", {class: "muted"},
    "The test alert reaches the hospital's webhooks as wardsight.system.test_alert with data.test = true, "
    + "so receiving systems can tell it from a real alert.");
  const el = h("div", {class: "commissioning"}, summary, list,
    can("operator") ? h("p", {}, button) : h("p", {class: "muted"}, "Sending a test alert needs the operator role."),
    note);

  function draw(data) {
    keepFocus(el, () => {
      summary.replaceChildren(badge(LABELS[data.status] || data.status, `check-badge check-${data.status}`), " ",
        OVERALL[data.status] || data.status);
      summary.dataset.status = data.status;
      clear(list).append(...data.checks.map(checkItem));
    });
  }

  async function refresh() {
    try {
      draw(await get(path));
    } catch (err) {
      if (err instanceof ApiError && err.routeMissing) {
        summary.textContent = "Commissioning checks are not available on this server.";
      } else if (!(err instanceof ApiError && err.status === 401)) {
        summary.textContent = `Cannot load the commissioning checks: ${err.message}`;
      }
    }
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const sent = await post(`${path}/test-alert`, {});
      draw(sent.commissioning);
      const n = sent.webhooks;
      report(n ? `Test alert sent to ${n} webhook${n === 1 ? "" : "s"}; waiting for delivery.`
        : "Test alert stored, but no enabled webhook takes it (see the check).", n ? "ok" : "error");
      for (const ms of [500, 1500, 4000]) timers.push(setTimeout(refresh, ms));
    } catch (err) {
      report(`Send test alert failed: ${err.message}`, "error");
    } finally {
      button.disabled = false;
    }
  });

  timers.push(setInterval(refresh, Math.max(refreshMs, 5000)));
  return {el, refresh};
}
