// The zone editor's pure parts: the device's reported layout as shapes, is an outline a simple polygon, how much of
// the frame shapes cover, what changed between the device's zones and privacy regions and the edited ones, and the
// edit the device applies to its own device.toml (wardsight.device_config.LayoutEdit; nothing else of its
// configuration changes).
"use strict";

export const REPORTED_DIGITS = 4;  // the device reports polygons rounded to this many decimals
const TOLERANCE = 10 ** -REPORTED_DIGITS + 1e-9;

const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
const onSegment = (p, a, b) => Math.min(a[0], b[0]) <= p[0] && p[0] <= Math.max(a[0], b[0])
  && Math.min(a[1], b[1]) <= p[1] && p[1] <= Math.max(a[1], b[1]);

function segmentsMeet(p1, p2, q1, q2) {
  const d1 = cross(q1, q2, p1), d2 = cross(q1, q2, p2), d3 = cross(p1, p2, q1), d4 = cross(p1, p2, q2);
  if (((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0))) return true;
  return (d1 === 0 && onSegment(p1, q1, q2)) || (d2 === 0 && onSegment(p2, q1, q2))
    || (d3 === 0 && onSegment(q1, p1, p2)) || (d4 === 0 && onSegment(q2, p1, p2));
}

// Why the outline (points in order, closed back to the first) is not a simple polygon, or null. The same rule as
// wardsight.device_config.polygon_problem, which the server and the device apply: edges that are not neighbours
// may not cross or touch, an edge may not run back along the one before it; repeated points are ignored.
export function polygonProblem(points) {
  const ring = [];
  points.forEach(([x, y], i) => {
    const last = ring[ring.length - 1];
    if (!last || last.p[0] !== x || last.p[1] !== y) ring.push({n: i + 1, p: [x, y]});
  });
  while (ring.length > 1 && ring[0].p[0] === ring[ring.length - 1].p[0] && ring[0].p[1] === ring[ring.length - 1].p[1]) ring.pop();
  const n = ring.length;
  if (n < 3) return "it needs at least 3 different points";
  if (ring.slice(1, -1).every((r, i) => cross(ring[0].p, r.p, ring[i + 2].p) === 0)) return "it has no area (its points are on one line)";
  const edges = ring.map((r, i) => [r, ring[(i + 1) % n]]);
  const name = e => `the edge from point ${e[0].n} to point ${e[1].n}`;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (j === i + 1 || (i === 0 && j === n - 1)) {
        const [first, second] = j === i + 1 ? [edges[i], edges[j]] : [edges[j], edges[i]];
        const start = first[0].p, shared = first[1].p, end = second[1].p;
        const back = (start[0] - shared[0]) * (end[0] - shared[0]) + (start[1] - shared[1]) * (end[1] - shared[1]);
        if (cross(shared, start, end) === 0 && back > 0) return `its outline crosses itself: ${name(second)} runs back along ${name(first)}`;
      } else if (segmentsMeet(edges[i][0].p, edges[i][1].p, edges[j][0].p, edges[j][1].p)) {
        return `its outline crosses itself: ${name(edges[i])} crosses ${name(edges[j])}`;
      }
    }
  }
  return null;
}

// Area of a polygon in frame-relative units: the fraction of the frame it covers.
export function polygonArea(points) {
  let twice = 0;
  points.forEach((p, i) => { const q = points[(i + 1) % points.length]; twice += p[0] * q[1] - q[0] * p[1]; });
  return Math.abs(twice) / 2;
}

function inside(x, y, poly) {
  let hit = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i], [xj, yj] = poly[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
  }
  return hit;
}

// The fraction of the frame that at least one of the polygons covers (sampled on a grid of cells).
export function coverage(polygons, cells = 240) {
  if (!polygons.length) return 0;
  let covered = 0;
  for (let r = 0; r < cells; r++) {
    const y = (r + 0.5) / cells;
    for (let c = 0; c < cells; c++) {
      const x = (c + 0.5) / cells;
      if (polygons.some(poly => inside(x, y, poly))) covered++;
    }
  }
  return covered / (cells * cells);
}

export function samePolygon(a, b) {
  return a.length === b.length && a.every((p, i) => Math.abs(p[0] - b[i][0]) <= TOLERANCE && Math.abs(p[1] - b[i][1]) <= TOLERANCE);
}

export const pct = f => `${(f * 100).toFixed(1)}%`;

const copy = p => p.map(([x, y]) => [x, y]);
// The device's reported layout as the editor's shapes: its privacy regions get an id and a label (their names stay
// on the device).
export function fromReport(zones, regions) {
  return {
    zones: zones.map(z => ({name: z.name, kind: z.kind, polygon: copy(z.polygon)})),
    privacy: regions.map((r, i) => ({id: `device-${i + 1}`, name: `privacy region ${i + 1}`, existing: true, polygon: copy(r.polygon)})),
  };
}
export const clone = layout => ({zones: layout.zones.map(z => ({...z, polygon: copy(z.polygon)})),
  privacy: layout.privacy.map(r => ({...r, polygon: copy(r.polygon)}))});

// What changed from `base` (the device's layout) to `current` (the editor's). Zones are matched by name, privacy
// regions by id (the device's own regions keep the id they were loaded with; their names stay on the device).
export function layoutDiff(base, current) {
  const baseZones = new Map(base.zones.map(z => [z.name, z]));
  const nowZones = new Map(current.zones.map(z => [z.name, z]));
  const zones = {
    added: current.zones.filter(z => !baseZones.has(z.name)),
    removed: base.zones.filter(z => !nowZones.has(z.name)),
    changed: current.zones.filter(z => baseZones.has(z.name)).map(z => ({before: baseZones.get(z.name), after: z}))
      .filter(({before, after}) => before.kind !== after.kind || !samePolygon(before.polygon, after.polygon)),
  };
  const nowIds = new Set(current.privacy.map(r => r.id));
  const baseIds = new Set(base.privacy.map(r => r.id));
  const privacy = {
    added: current.privacy.filter(r => !baseIds.has(r.id)),
    removed: base.privacy.filter(r => !nowIds.has(r.id)),
  };
  const count = zones.added.length + zones.removed.length + zones.changed.length + privacy.added.length + privacy.removed.length;
  return {zones, privacy, empty: count === 0};
}

// The job's edit (wardsight.device_config.LayoutEdit): only zones and privacy regions, nothing else.
export function layoutEdit(diff) {
  const shape = z => ({name: z.name, kind: z.kind, polygon: z.polygon.map(p => [p[0], p[1]])});
  return {
    v: 1,
    zones: {add: diff.zones.added.map(shape), change: diff.zones.changed.map(c => shape(c.after)),
      remove: diff.zones.removed.map(z => z.name)},
    privacy_regions: {add: diff.privacy.added.map(r => ({name: r.name, polygon: r.polygon.map(p => [p[0], p[1]])})),
      remove: diff.privacy.removed.map(r => ({polygon: r.polygon.map(p => [p[0], p[1]])}))},
  };
}

// One line per change, for the review before saving: [{change: "added" | "removed" | "changed", text}], and the
// privacy summary {kind: "shrinks" | "grows" | "same", text}: how much of the frame the privacy regions of `base`
// and of `current` black out together.
export function describeDiff(diff, base, current) {
  const lines = [];
  const zoneText = z => `zone ${z.name} (${z.kind})`;
  for (const z of diff.zones.added) lines.push({change: "added", text: `Add ${zoneText(z)}: ${z.polygon.length} points, ${pct(polygonArea(z.polygon))} of the frame.`});
  for (const {before, after} of diff.zones.changed) {
    const what = [];
    if (before.kind !== after.kind) what.push(`kind ${before.kind} → ${after.kind}`);
    if (!samePolygon(before.polygon, after.polygon)) what.push(`outline redrawn (${pct(polygonArea(before.polygon))} → ${pct(polygonArea(after.polygon))} of the frame)`);
    lines.push({change: "changed", text: `Change zone ${after.name}: ${what.join(", ")}; its other settings stay.`});
  }
  for (const z of diff.zones.removed) lines.push({change: "removed", text: `Remove ${zoneText(z)} (${pct(polygonArea(z.polygon))} of the frame).`});
  for (const r of diff.privacy.added) lines.push({change: "added", text: `Add privacy region ${r.name}: it grows the blacked-out area by up to ${pct(polygonArea(r.polygon))} of the frame.`});
  for (const r of diff.privacy.removed) lines.push({change: "removed", text: `Remove ${r.name}: it shrinks the blacked-out area by up to ${pct(polygonArea(r.polygon))} of the frame; what it hid will be seen by the device's apps.`});
  const before = coverage(base.privacy.map(r => r.polygon));
  const after = diff.privacy.added.length || diff.privacy.removed.length ? coverage(current.privacy.map(r => r.polygon)) : before;
  const delta = after - before;
  let privacy;
  if (Math.abs(delta) < 0.0005) privacy = {kind: "same", text: `The blacked-out area stays ${pct(before)} of the frame.`};
  else if (delta < 0) privacy = {kind: "shrinks", text: `The blacked-out area shrinks from ${pct(before)} to ${pct(after)} of the frame: less of the room is hidden at capture.`};
  else privacy = {kind: "grows", text: `The blacked-out area grows from ${pct(before)} to ${pct(after)} of the frame.`};
  return {lines, privacy};
}
