// Canvas drawing: small line charts and the privacy-safe scene (boxes and skeletons on black, never an image).
"use strict";

// COCO keypoint order (wardsight/keypoints.py) and the limbs drawn between them.
export const KEYPOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
  "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
  "left_knee", "right_knee", "left_ankle", "right_ankle"];
const LIMBS = [[0, 1], [0, 2], [1, 3], [2, 4], [5, 6], [5, 7], [7, 9], [6, 8], [8, 10], [5, 11], [6, 12],
  [11, 12], [11, 13], [13, 15], [12, 14], [14, 16]];
// The scene's colours: the one source for what drawScene draws and for the zone editor's legend (its swatches are
// filled from here). Zones by kind; a privacy region's outline and its fill; a person's box and skeleton; the shape
// being drawn.
export const SCENE_COLORS = Object.freeze({door: "#4fc3f7", dispenser: "#81c784", bed: "#ffb74d", floor: "#ba68c8",
  room: "#e0e0e0", privacy: "#9e9e9e", privacyFill: "#323232", box: "#fdd835", skeleton: "#00e5ff", draft: "#ff5252"});
export const ZONE_COLORS = Object.freeze({door: SCENE_COLORS.door, dispenser: SCENE_COLORS.dispenser,
  bed: SCENE_COLORS.bed, floor: SCENE_COLORS.floor, room: SCENE_COLORS.room});
// The legend: [colour key, what it marks]; a privacy region's swatch shows its fill inside its outline.
export const LEGEND = [["door", "door zone"], ["dispenser", "dispenser zone"], ["bed", "bed zone"],
  ["floor", "floor zone"], ["room", "room zone"], ["privacy", "privacy region (blacked out)"], ["box", "person (box)"],
  ["skeleton", "person (skeleton)"], ["draft", "shape being drawn"]];

export function prepare(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || Number(canvas.getAttribute("width")) || 300;
  const hgt = canvas.clientHeight || Number(canvas.getAttribute("height")) || 150;
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(hgt * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(hgt * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return {ctx, w, h: hgt};
}

// points: [[t, value], ...] (t in seconds); nulls are gaps. Returns a one-line text summary for screen readers.
export function lineChart(canvas, points, {color = "#1565c0", unit = "", digits = 1} = {}) {
  const {ctx, w, h} = prepare(canvas);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, w, h);
  const vals = points.filter(p => p[1] !== null && p[1] !== undefined && Number.isFinite(p[1]));
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#333";
  if (vals.length === 0) {
    ctx.fillText("no samples yet", 8, h / 2);
    return "no samples yet";
  }
  let lo = Math.min(...vals.map(p => p[1]));
  let hi = Math.max(...vals.map(p => p[1]));
  if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
  const t0 = vals[0][0];
  const t1 = vals[vals.length - 1][0];
  const span = Math.max(t1 - t0, 1e-9);
  const padL = 44, padR = 8, padT = 8, padB = 18;
  const x = t => padL + ((t - t0) / span) * (w - padL - padR);
  const y = v => padT + (1 - (v - lo) / (hi - lo)) * (h - padT - padB);
  ctx.strokeStyle = "#bbb";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(padL, padT); ctx.lineTo(padL, h - padB); ctx.lineTo(w - padR, h - padB);
  ctx.stroke();
  ctx.fillStyle = "#333";
  ctx.fillText(hi.toFixed(digits), 4, padT + 10);
  ctx.fillText(lo.toFixed(digits), 4, h - padB);
  ctx.fillText(new Date(t0 * 1000).toLocaleTimeString(), padL, h - 4);
  const endLabel = new Date(t1 * 1000).toLocaleTimeString();
  ctx.fillText(endLabel, w - padR - ctx.measureText(endLabel).width, h - 4);
  ctx.strokeStyle = color;
  ctx.lineWidth = 2;
  ctx.beginPath();
  let pen = false;
  for (const [t, v] of points) {
    if (v === null || v === undefined || !Number.isFinite(v)) { pen = false; continue; }
    if (pen) ctx.lineTo(x(t), y(v)); else ctx.moveTo(x(t), y(v));
    pen = true;
  }
  ctx.stroke();
  if (vals.length === 1) {
    ctx.fillStyle = color;
    ctx.beginPath(); ctx.arc(x(vals[0][0]), y(vals[0][1]), 3, 0, 2 * Math.PI); ctx.fill();
  }
  const last = vals[vals.length - 1][1];
  const realLo = Math.min(...vals.map(p => p[1])), realHi = Math.max(...vals.map(p => p[1]));
  return `latest ${last.toFixed(digits)}${unit}, range ${realLo.toFixed(digits)} to ${realHi.toFixed(digits)}${unit} over ${vals.length} samples`;
}

// Black left around the frame on every side (CSS pixels): room to click just outside it, which puts the point on
// the frame's edge (toFrame).
export const FRAME_MARGIN = 12;
// A click this close to the frame's edge (CSS pixels) lands exactly on it.
export const SNAP_PX = 6;

// The view transform for a frame of (fw, fh) pixels letterboxed into the canvas, FRAME_MARGIN from its sides.
export function frameBox(w, h, fw, fh) {
  const aspect = fw && fh ? fw / fh : 16 / 9;
  const m = Math.min(FRAME_MARGIN, w / 8, h / 8);
  const aw = w - 2 * m, ah = h - 2 * m;
  let bw = aw, bh = aw / aspect;
  if (bh > ah) { bh = ah; bw = ah * aspect; }
  return {x0: (w - bw) / 2, y0: (h - bh) / 2, bw, bh};
}

// Normalise the scene's people: boxes [x1, y1, x2, y2] and keypoints [[x, y, score], ...] in frame pixels.
function peopleOf(scene) {
  const out = [];
  for (const p of (scene && scene.people) || []) {
    let box = p.box || p.bbox || null;
    if (box && !Array.isArray(box)) box = [box.x1 ?? box.x, box.y1 ?? box.y, box.x2 ?? (box.x + box.w), box.y2 ?? (box.y + box.h)];
    let kps = p.keypoints || [];
    if (!Array.isArray(kps)) kps = KEYPOINTS.map(n => kps[n] || null);
    kps = kps.map(k => (k === null ? null : Array.isArray(k) ? k : [k.x, k.y, k.score ?? 1]));
    out.push({box, kps, id: p.track_id ?? p.id ?? null});
  }
  return out;
}

// Draw black, the privacy regions, zones (one may be highlighted), and the people.
export function drawScene(canvas, {scene, zones = [], privacy = [], draft = null, selected = null, frameSize}) {
  const {ctx, w, h} = prepare(canvas);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, w, h);
  const size = frameSize || (scene && (scene.frame_size || [scene.width, scene.height])) || [16, 9];
  const [fw, fh] = size;
  const fb = frameBox(w, h, fw, fh);
  ctx.strokeStyle = "#444";
  ctx.lineWidth = 1;
  ctx.strokeRect(fb.x0 + 0.5, fb.y0 + 0.5, fb.bw - 1, fb.bh - 1);
  const nx = u => fb.x0 + u * fb.bw;
  const ny = v => fb.y0 + v * fb.bh;
  const poly = (points, color, fill, dashed, label, thick) => {
    if (!points.length) return;
    ctx.save();
    ctx.strokeStyle = color;
    ctx.lineWidth = thick ? 3 : 2;
    if (dashed) ctx.setLineDash([6, 4]);
    ctx.beginPath();
    points.forEach(([u, v], i) => (i ? ctx.lineTo(nx(u), ny(v)) : ctx.moveTo(nx(u), ny(v))));
    if (points.length > 2) ctx.closePath();
    if (fill) { ctx.fillStyle = fill; ctx.fill(); }
    ctx.stroke();
    ctx.setLineDash([]);
    for (const [u, v] of points) {
      ctx.fillStyle = color;
      ctx.fillRect(nx(u) - 3, ny(v) - 3, 6, 6);
    }
    if (label) {
      ctx.font = "13px system-ui, sans-serif";
      ctx.fillStyle = color;
      ctx.fillText(label, nx(points[0][0]) + 5, ny(points[0][1]) + 15);
    }
    ctx.restore();
  };
  privacy.forEach((r, i) => poly(r.polygon, SCENE_COLORS.privacy, SCENE_COLORS.privacyFill, false,
    `privacy: ${r.name}`, selected && selected.layer === "privacy" && selected.index === i));
  zones.forEach((z, i) => poly(z.polygon, ZONE_COLORS[z.kind] || "#fff", null, false, `${z.name} (${z.kind})`,
    selected && selected.layer === "zone" && selected.index === i));
  for (const p of peopleOf(scene)) {
    const sx = x => fb.x0 + (x / fw) * fb.bw;
    const sy = y => fb.y0 + (y / fh) * fb.bh;
    if (p.box) {
      ctx.strokeStyle = SCENE_COLORS.box;
      ctx.lineWidth = 2;
      ctx.strokeRect(sx(p.box[0]), sy(p.box[1]), sx(p.box[2]) - sx(p.box[0]), sy(p.box[3]) - sy(p.box[1]));
      if (p.id !== null) {
        ctx.fillStyle = SCENE_COLORS.box;
        ctx.font = "12px system-ui, sans-serif";
        ctx.fillText(`#${p.id}`, sx(p.box[0]) + 3, sy(p.box[1]) - 4);
      }
    }
    ctx.strokeStyle = SCENE_COLORS.skeleton;
    ctx.lineWidth = 2;
    for (const [a, b] of LIMBS) {
      const ka = p.kps[a], kb = p.kps[b];
      if (!ka || !kb || (ka[2] ?? 1) < 0.2 || (kb[2] ?? 1) < 0.2) continue;
      ctx.beginPath(); ctx.moveTo(sx(ka[0]), sy(ka[1])); ctx.lineTo(sx(kb[0]), sy(kb[1])); ctx.stroke();
    }
    ctx.fillStyle = "#ffffff";
    for (const k of p.kps) {
      if (!k || (k[2] ?? 1) < 0.2) continue;
      ctx.beginPath(); ctx.arc(sx(k[0]), sy(k[1]), 2.5, 0, 2 * Math.PI); ctx.fill();
    }
  }
  if (draft && draft.points.length) poly(draft.points, SCENE_COLORS.draft, null, true, "new");
  return {fb, peopleCount: peopleOf(scene).length};
}

// Canvas pixel (from a mouse event) to frame-relative [0..1] coordinates. A click on the black around the frame
// (the margin, the letterbox bars) or within SNAP_PX of its edge lands on the nearest point of the edge: a zone or
// privacy region can reach the frame's edge exactly, and no click is lost.
export function toFrame(canvas, ev, frameSize) {
  const rect = canvas.getBoundingClientRect();
  const [fw, fh] = frameSize || [16, 9];
  const fb = frameBox(rect.width, rect.height, fw, fh);
  const px = ev.clientX - rect.left - fb.x0, py = ev.clientY - rect.top - fb.y0;
  const snap = (p, size) => (p <= SNAP_PX ? 0 : p >= size - SNAP_PX ? 1 : Math.round((p / size) * 1000) / 1000);
  return [snap(px, fb.bw), snap(py, fb.bh)];
}
