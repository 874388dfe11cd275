// The zone / privacy-region editor over the privacy-safe scene (boxes and skeletons on black). It starts from the
// zones and privacy regions the device reports (the scene API's layout), shows what would change before saving, and
// saves only those changes: a push_config job with params {merge: "zones"} whose config is the edit, which the
// device applies to its own device.toml (every other setting there stays as it is).
import {can, get, getOptional, post, ApiError} from "./api.js";
import {h, clear, field, fmtTime, notice, unavailable} from "./ui.js";
import {drawScene, toFrame, SCENE_COLORS, LEGEND} from "./canvas.js";
import {followBatch} from "./page-jobs.js";
import {polygonProblem, layoutDiff, layoutEdit, describeDiff, fromReport, clone} from "./zone-edit.js";

const ZONE_KINDS = ["door", "dispenser", "bed", "floor", "room"];
const IDENT = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
const FINAL = new Set(["succeeded", "failed", "refused", "expired", "cancelled"]);

// A legend swatch in the colour the canvas draws (canvas.js SCENE_COLORS; set through the CSSOM, which the console's
// Content-Security-Policy allows).
function swatch(key) {
  const el = h("span", {class: "swatch", dataset: {kind: key}, "aria-hidden": "true"});
  el.style.backgroundColor = key === "privacy" ? SCENE_COLORS.privacyFill : (SCENE_COLORS[key] || "#fff");
  if (key === "privacy") el.style.border = `2px solid ${SCENE_COLORS.privacy}`;
  return el;
}

function controls() {
  const c = {
    layer: field("Shape type", "select", {}, [["zone", "Zone"], ["privacy", "Privacy region (blacked out at capture)"]]),
    name: field("Shape name", "text", {autocomplete: "off", placeholder: "e.g. door-1"}),
    kind: field("Zone kind", "select", {}, ZONE_KINDS.map(k => [k, k])),
    px: field("Point x (0 to 1)", "number", {min: 0, max: 1, step: 0.01, value: "0.5"}),
    py: field("Point y (0 to 1)", "number", {min: 0, max: 1, step: 0.01, value: "0.5"}),
    draftInfo: h("p", {class: "muted", "aria-live": "polite"}, "Not drawing."),
    draftError: h("p", {class: "notice notice-error", role: "alert", hidden: true}),
    start: h("button", {type: "button"}, "Start a new shape"),
    addPoint: h("button", {type: "button", disabled: true}, "Add point"),
    undo: h("button", {type: "button", disabled: true}, "Undo last point"),
    finish: h("button", {type: "button", disabled: true}, "Finish shape"),
    cancel: h("button", {type: "button", disabled: true}, "Cancel shape"),
    review: h("button", {type: "button", class: "primary", disabled: true}, "Review changes"),
    discard: h("button", {type: "button", disabled: true}, "Discard changes"),
  };
  c.layer.input.addEventListener("change", () => { c.kind.wrap.hidden = c.layer.input.value !== "zone"; });
  return c;
}

export function buildZoneEditor(device, report, timers) {
  // base: what the device reports it runs with (null until it has); zones / privacy: the edited shapes.
  const state = {base: null, layoutKey: null, zones: [], privacy: [], draft: null, selected: null, scene: null,
    frameSize: null, saving: false, newIds: 0};
  const canvas = h("canvas", {class: "scene", width: 640, height: 360, tabIndex: 0, role: "img",
    "aria-label": "Privacy-safe view of the room: people as boxes and skeletons on black, with zones and privacy regions"});
  const sceneNote = h("p", {class: "muted", "aria-live": "polite"});
  const layoutNote = h("p", {class: "muted layout-note", "aria-live": "polite"}, "Waiting for the device to report its zones and privacy regions (it does while this page is open)…");
  const staleNote = h("div", {hidden: true});
  const shapesList = h("ul", {class: "shapes", "aria-label": "Zones and privacy regions"});
  const reviewBox = h("section", {class: "zone-review card", "aria-labelledby": "zone-review-h", hidden: true});
  const jobOut = h("div", {class: "job-follow", "aria-live": "polite"});
  const editable = can("operator");
  const c = controls();
  const ready = () => state.base !== null;
  const diff = () => layoutDiff(state.base, {zones: state.zones, privacy: state.privacy});
  const unsaved = () => ready() && !diff().empty;

  function showError(text) {
    c.draftError.textContent = text;
    c.draftError.hidden = !text;
    if (text) report(text, "error");
  }

  function closeReview() { reviewBox.hidden = true; clear(reviewBox); }

  let resized = null;
  function paint() {
    drawScene(canvas, {scene: state.scene, zones: state.zones, privacy: state.privacy, draft: state.draft,
      selected: state.selected, frameSize: state.frameSize});
  }

  function redraw() {
    paint();
    clear(shapesList);
    const baseZones = new Map((state.base ? state.base.zones : []).map(z => [z.name, z]));
    const item = (layerName, list, i, s) => {
      const label = layerName === "zone" ? `Zone ${s.name} (${s.kind})` : s.existing ? `Privacy region ${s.name.replace(/^privacy region /, "")} (its name stays on the device)` : `Privacy region ${s.name}`;
      const isNew = layerName === "zone" ? !baseZones.has(s.name) : !s.existing;
      const li = h("li", {}, swatch(layerName === "zone" ? s.kind : "privacy"),
        ` ${label}, ${s.polygon.length} points${isNew ? " (not saved yet)" : ""} `);
      li.appendChild(h("button", {type: "button", "aria-pressed": String(!!(state.selected && state.selected.layer === layerName && state.selected.index === i)),
        onclick: () => { state.selected = {layer: layerName, index: i}; redraw(); }}, "Highlight"));
      if (editable) {
        li.appendChild(h("button", {type: "button", "aria-label": `Delete ${label}`, disabled: state.saving, onclick: () => {
          list.splice(i, 1); state.selected = null; closeReview(); redraw(); report(`${label} deleted (not saved yet).`, "info");
        }}, "Delete"));
      }
      shapesList.appendChild(li);
    };
    state.privacy.forEach((s, i) => item("privacy", state.privacy, i, s));
    state.zones.forEach((s, i) => item("zone", state.zones, i, s));
    if (!state.zones.length && !state.privacy.length) shapesList.appendChild(h("li", {class: "empty"}, ready() ? "No zones or privacy regions." : "Not loaded yet."));
    const drawing = state.draft !== null;
    c.start.disabled = drawing || !editable || !ready() || state.saving;
    for (const b of [c.addPoint, c.cancel]) b.disabled = !drawing;
    c.undo.disabled = !drawing || !state.draft.points.length;
    c.finish.disabled = !drawing || state.draft.points.length < 3;
    c.review.disabled = drawing || state.saving || !unsaved();
    c.discard.disabled = state.saving || !unsaved();
    if (!drawing) c.draftInfo.textContent = "Not drawing.";
  }

  function addPoint(p) {
    if (!state.draft || !p) return;
    if (state.draft.points.length >= 64) { showError("A shape has at most 64 points."); return; }
    state.draft.points.push(p);
    showError("");
    const edge = [p[0] === 0 && "left", p[0] === 1 && "right", p[1] === 0 && "top", p[1] === 1 && "bottom"].filter(Boolean);
    redraw();
    c.draftInfo.textContent = `Drawing ${state.draft.layer === "zone" ? "zone" : "privacy region"} ${state.draft.name}: point ${state.draft.points.length} at (${p[0]}, ${p[1]})${edge.length ? `, on the frame's ${edge.join(" and ")} edge` : ""}. Click the view or use the point fields; at least 3 points.`;
  }

  c.start.addEventListener("click", () => {
    const n = c.name.input.value.trim();
    const isZone = c.layer.input.value === "zone";
    if (!n) { showError("Give the shape a name first."); c.name.input.focus(); return; }
    if (isZone && !IDENT.test(n)) { showError("A zone name is letters, digits and _ . : - (starting with a letter or digit)."); c.name.input.focus(); return; }
    if (!isZone && n.length > 64) { showError("A privacy region's name is at most 64 characters."); return; }
    const taken = (isZone ? state.zones : state.privacy).some(s => s.name === n);
    if (taken) { showError(`There is already a ${isZone ? "zone" : "privacy region"} named ${n}.`); return; }
    showError("");
    closeReview();
    state.draft = {layer: c.layer.input.value, name: n, kind: c.kind.input.value, points: []};
    redraw();
    c.draftInfo.textContent = `Drawing ${isZone ? "zone" : "privacy region"} ${n}: click its points in order around it (a click on the black around the frame lands on the frame's edge).`;
    canvas.focus();
  });
  c.addPoint.addEventListener("click", () => {
    const x = Number(c.px.input.value), y = Number(c.py.input.value);
    if (!(x >= 0 && x <= 1 && y >= 0 && y <= 1)) { showError("Point coordinates are between 0 and 1."); return; }
    addPoint([Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000]);
  });
  c.undo.addEventListener("click", () => { if (state.draft) { state.draft.points.pop(); showError(""); redraw(); } });
  c.cancel.addEventListener("click", () => { state.draft = null; showError(""); redraw(); });
  c.finish.addEventListener("click", () => {
    const d = state.draft;
    if (!d || d.points.length < 3) return;
    const problem = polygonProblem(d.points);
    if (problem) {
      showError(`Shape ${d.name} cannot be used: ${problem}. Click its points in order around the shape: undo the last points, or cancel it.`);
      return;
    }
    if (d.layer === "zone") state.zones.push({name: d.name, kind: d.kind, polygon: d.points});
    else state.privacy.push({id: `new-${++state.newIds}`, name: d.name, polygon: d.points});
    state.draft = null;
    c.name.input.value = "";
    redraw();
    report(`Shape ${d.name} added (not saved yet: review the changes to save them).`, "info");
  });
  canvas.addEventListener("click", ev => { if (state.draft) addPoint(toFrame(canvas, ev, state.frameSize)); });
  c.discard.addEventListener("click", () => {
    if (!ready()) return;
    Object.assign(state, clone(state.base), {draft: null, selected: null});
    closeReview(); showError(""); redraw();
    report("Changes discarded: the editor shows the device's zones and privacy regions.", "info");
  });
  c.review.addEventListener("click", () => openReview());

  // ---- review and save ----------------------------------------------------------------------------------------
  function openReview() {
    if (state.draft) { showError("Finish or cancel the shape being drawn first."); return; }
    const d = diff();
    if (d.empty) { report("Nothing to save: the shapes are the device's.", "info"); return; }
    const {lines, privacy} = describeDiff(d, state.base, {zones: state.zones, privacy: state.privacy});
    const confirmBtn = h("button", {type: "button", class: "primary"}, "Confirm and save");
    const backBtn = h("button", {type: "button"}, "Back to editing");
    clear(reviewBox).append(
      h("h3", {id: "zone-review-h"}, `Changes to save on ${device.name || device.id}`),
      h("ul", {class: "zone-diff", "aria-label": "Changes to save"},
        lines.map(l => h("li", {dataset: {change: l.change}}, l.text))),
      h("p", {class: privacy.kind === "shrinks" ? "notice notice-error privacy-change" : "notice privacy-change", dataset: {privacy: privacy.kind}}, privacy.text),
      h("p", {class: "muted"}, "Only these zones and privacy regions change on the device; every other setting in its device.toml stays as it is. The device restarts its agent with them (it refuses the change if its zones changed meanwhile)."),
      h("p", {}, confirmBtn, " ", backBtn));
    reviewBox.hidden = false;
    confirmBtn.addEventListener("click", () => save(d, confirmBtn));
    backBtn.addEventListener("click", () => { closeReview(); c.review.focus(); });
    confirmBtn.focus();
  }

  async function save(d, confirmBtn) {
    confirmBtn.disabled = true;
    state.saving = true;
    redraw();
    let made;
    try {
      made = await post("/api/v1/jobs", {kind: "push_config", params: {merge: "zones"}, config: JSON.stringify(layoutEdit(d)),
        target: {device_ids: [device.id]}, expires_in_s: 3600});
    } catch (err) {
      state.saving = false;
      confirmBtn.disabled = false;
      redraw();
      report(err instanceof ApiError && err.routeMissing ? "Jobs are not available on this server yet (POST /api/v1/jobs)." : `Saving failed: ${err.message}`, "error");
      return;
    }
    closeReview();
    report(made.status === "awaiting_approval"
      ? `Configuration job ${made.batch_id} waits for a second admin's approval: it removes or shrinks a privacy region.`
      : `Configuration job ${made.batch_id} started: only the zones and privacy regions change.`, "ok");
    followBatch(made.batch_id, jobOut, timers);
    const t = setInterval(async () => {
      let batch;
      try { batch = await get(`/api/v1/jobs/${encodeURIComponent(made.batch_id)}`); } catch (_) { return; }
      const job = (batch.jobs || [])[0];
      if (!job || !FINAL.has(job.state)) return;
      clearInterval(t);
      state.saving = false;
      if (job.state === "succeeded") {
        for (const r of state.privacy) r.existing = true;
        state.base = clone({zones: state.zones, privacy: state.privacy});  // the device's layout now; its report follows
        report(`Saved: the device applied the changes (job ${made.batch_id}).`, "ok");
      } else {
        report(`The device did not apply the changes (${job.state}${job.reason ? `: ${job.reason}` : ""}); nothing changed on it. Your changes are still here.`, "error");
      }
      redraw();
    }, 1000);
    timers.push(t);
  }

  // ---- the device's scene and layout ---------------------------------------------------------------------------
  function takeLayout(data) {
    if (data.zones === null || data.zones === undefined || data.privacy_regions === null || data.privacy_regions === undefined) return;
    const key = JSON.stringify([data.zones, data.privacy_regions]);
    if (key === state.layoutKey || state.saving) return;  // while a save runs, its outcome decides (below)
    const first = state.layoutKey === null;
    state.layoutKey = key;
    const reported = fromReport(data.zones, data.privacy_regions);
    if (first || (!unsaved() && !state.draft)) {
      state.base = reported;
      Object.assign(state, clone(reported), {selected: null});
      staleNote.hidden = true;
      layoutNote.textContent = `The device runs with ${reported.zones.length} zone(s) and ${reported.privacy.length} privacy region(s) (as it reported them at ${fmtTime(data.layout_received_at)}); the editor starts from these.`;
    } else {
      const reload = h("button", {type: "button", onclick: () => {
        state.base = reported;
        Object.assign(state, clone(reported), {draft: null, selected: null});
        staleNote.hidden = true; closeReview(); redraw();
      }}, "Discard my changes and load the device's");
      clear(staleNote).append(notice("The device now reports other zones or privacy regions than when you started editing (another save?). Your changes are kept; the device refuses them if they no longer fit.", "error"), reload);
      staleNote.hidden = false;
    }
  }

  // The scene API (live view and the device's zones) is for operators: a viewer is told so and never refused.
  let sceneMissing = !editable;
  if (sceneMissing) {
    sceneNote.textContent = "The live view needs the operator role.";
    layoutNote.textContent = "The device's zones and privacy regions are shown to operators.";
  }
  async function refreshScene() {
    if (sceneMissing) return;
    try {
      const data = await getOptional(`/api/v1/devices/${encodeURIComponent(device.id)}/scene`);
      if (data === null) {
        sceneMissing = true;
        sceneNote.replaceChildren(unavailable("Live skeleton view", "GET /api/v1/devices/{id}/scene"));
        layoutNote.textContent = "The editor needs the device's own zones and privacy regions (the scene API), which this server does not serve.";
        redraw();
        return;
      }
      const snap = data.snapshot !== undefined ? data.snapshot : (data.live ? data : null);
      state.scene = snap;
      if (snap) state.frameSize = snap.frame_size || [snap.frame_width, snap.frame_height];
      takeLayout(data);
      if (!snap) sceneNote.textContent = "Waiting for the device's live view (it sends one every few seconds while this page is open).";
      else {
        const n = (snap.people || []).length;
        sceneNote.textContent = `${n} ${n === 1 ? "person" : "people"} in view (${snap.frame_width}×${snap.frame_height}), ${Math.round(data.age_seconds ?? 0)} s old.`;
      }
      redraw();
    } catch (err) {
      state.scene = null;
      if (err instanceof ApiError && err.status === 403) { sceneMissing = true; sceneNote.textContent = "The live view needs the operator role."; }
      else sceneNote.textContent = `No live view: ${err.message}`;
      redraw();
    }
  }

  const legend = h("ul", {class: "legend", "aria-label": "Colours in the view"},
    LEGEND.map(([key, text]) => h("li", {dataset: {kind: key}}, swatch(key), ` ${text}`)));
  const side = editable
    ? h("fieldset", {class: "shape-controls"}, h("legend", {}, "Draw a shape"),
      c.layer.wrap, c.name.wrap, c.kind.wrap, c.start, c.draftInfo, c.draftError,
      h("div", {class: "point-row"}, c.px.wrap, c.py.wrap, c.addPoint), c.undo, c.finish, c.cancel)
    : notice("Read-only: editing zones needs the operator role.");
  const el = h("div", {class: "zone-editor"},
    h("div", {class: "scene-wrap"}, canvas, sceneNote, legend),
    h("div", {class: "zone-side"}, layoutNote, staleNote, shapesList, side),
    editable ? h("p", {class: "zone-actions"}, c.review, " ", c.discard) : null, reviewBox, jobOut);

  async function load() {
    redraw();
    // The canvas follows its container's width (console.css keeps its aspect ratio): redraw at the new size at once.
    if (window.ResizeObserver) { resized = new ResizeObserver(paint); resized.observe(canvas); }
    await refreshScene();
    timers.push(setInterval(refreshScene, 1000));
  }

  return {el, load, stop: () => { if (resized) resized.disconnect(); }};
}
