// segloop mask editor (Streamlit components v2). Every edit happens here, in the browser, on a label map
// (one byte per pixel = object id): brush, erase, polygons with editable vertices, GrabCut box, superpixel
// smart brush, delete object, clear, undo / redo, zoom and pan. Python hears from it only on an action
// (save, submit, navigate, propagate, assist request), as setStateValue("action", {id, kind, labels, ...})
// with the label map as runs [value, length, ...]. Unsaved edits are kept in localStorage per frame, so
// leaving the page or reloading the browser never loses them; navigating with unsaved edits asks first.

const TOOLS = { b: "brush", e: "erase", p: "polygon", g: "box", s: "smart" };
const TOOL_NAMES = { brush: "Brush (B)", erase: "Erase (E)", polygon: "Polygon (P)", box: "Box → GrabCut (G)",
                     smart: "Superpixel brush (S)" };
const HISTORY_LIMIT = 60;
const STORE_PREFIX = "segloop-unsaved:";
const LEGEND = "B brush · E erase · P polygon (Enter closes, drag vertices, click an edge to add, right-click " +
  "removes) · G box → GrabCut · S superpixel brush · 1–9 object · [ ] brush size · H hide mask · wheel zoom · " +
  "space-drag / middle button pan · 0 fit · Ctrl+Z undo · Ctrl+Shift+Z / Ctrl+Y redo · Del delete object · " +
  "Ctrl+S save · Alt+← / Alt+→ previous / next";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

function button(label, action, title = "") {
  return el("button", { type: "button", text: label, title, "data-action": action });
}

function hexToRgb(hex) {
  const value = parseInt(hex.slice(1), 16);
  return [(value >> 16) & 255, (value >> 8) & 255, value & 255];
}

function decodeRuns(runs, size, ArrayType = Uint8Array) {
  const out = new ArrayType(size);
  let at = 0;
  for (let i = 0; i < runs.length; i += 2) {
    out.fill(runs[i], at, at + runs[i + 1]);
    at += runs[i + 1];
  }
  return out;
}

function encodeRuns(labels) {
  const runs = [];
  let value = labels[0];
  let length = 0;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] === value) { length++; continue; }
    runs.push(value, length);
    value = labels[i];
    length = 1;
  }
  if (labels.length) runs.push(value, length);
  return runs;
}

function loadImage(src) {
  return new Promise((resolve) => {
    if (!src) { resolve(null); return; }
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => resolve(null);
    image.src = src;
  });
}

// ------------------------------------------------------------------ DOM

function build(parentElement) {
  const root = el("div", { class: "segloop-canvas", tabIndex: 0 });
  const title = el("span", { class: "segloop-title" });
  const objects = el("span", { class: "segloop-objects" });
  const classSelect = el("select", { class: "segloop-class", title: "Class of the selected object" });
  const classAdd = button("+ class", "add-class", "Add a class for the selected object");
  const tools = el("span", { class: "segloop-tools" });
  for (const tool of ["brush", "erase", "polygon", "box", "smart"]) {
    tools.append(el("button", { type: "button", text: TOOL_NAMES[tool].replace(/ \(.\)$/, ""),
                                title: TOOL_NAMES[tool], "data-tool-button": tool }));
  }
  const size = el("span", { class: "segloop-size" });
  const opacity = el("input", { type: "range", min: 0, max: 100, value: 50, title: "Mask opacity",
                                class: "segloop-opacity" });
  const hide = el("label", { class: "segloop-check" }, el("input", { type: "checkbox" }), "Hide (H)");
  const protect = el("label", { class: "segloop-check", title: "Paint only on background and the selected object" },
                     el("input", { type: "checkbox", checked: true }), "Protect others");
  const row1 = el("div", { class: "segloop-toolbar" }, title, el("span", { text: "Object" }), objects, classSelect,
                  classAdd, tools, size);
  const row2 = el("div", { class: "segloop-toolbar" },
                  button("Undo", "undo", "Ctrl+Z"), button("Redo", "redo", "Ctrl+Shift+Z or Ctrl+Y"),
                  button("Delete object", "delete", "Delete the selected object's pixels (Del)"),
                  button("Clear", "clear", "Remove every object from this frame"),
                  button("Fit", "fit", "Fit the frame (0)"),
                  el("span", { text: "Opacity" }), opacity, hide, protect,
                  el("span", { class: "segloop-info" }));
  const canvas = el("canvas", { class: "segloop-surface" });
  canvas.dataset.testid = "segloop-mask-canvas";
  const viewport = el("div", { class: "segloop-viewport" }, canvas);
  const side = el("div", { class: "segloop-side", hidden: true });
  const stage = el("div", { class: "segloop-stage" }, viewport, side);
  const timeline = el("canvas", { class: "segloop-timeline", height: 22 });
  const propagate = el("span", { class: "segloop-propagate" },
                       button("◀ Propagate back", "propagate-back", "Propagate this frame's masks backward"),
                       el("input", { type: "number", min: 1, max: 200, value: 10, class: "segloop-span",
                                     title: "Frames to propagate" }),
                       button("Propagate forward ▶", "propagate-forward", "Propagate this frame's masks forward"),
                       button("Worst draft", "worst", "Jump to the draft whose forward and backward passes disagree most"));
  const row3 = el("div", { class: "segloop-toolbar" }, el("span", { class: "segloop-timeline-label" }), propagate);
  const row4 = el("div", { class: "segloop-toolbar segloop-actions" },
                  button("← Previous", "prev", "Alt+←"), button("Next →", "next", "Alt+→"),
                  button("Reload", "reload", "Load the newest saved masks"),
                  el("span", { class: "segloop-spacer" }),
                  button("Save draft", "save-draft", "Ctrl+S"), button("Submit", "save-submitted"),
                  button("Mark reviewed", "save-reviewed"), el("span", { class: "segloop-status" }));
  const legend = el("div", { class: "segloop-legend", text: LEGEND });
  const dialog = el("div", { class: "segloop-dialog", hidden: true });
  root.append(row1, row2, stage, timeline, row3, row4, legend, dialog);
  parentElement.appendChild(root);
  return {
    root, canvas, viewport, side, timeline, dialog, objects, classSelect, size, opacity,
    hide: hide.querySelector("input"), protect: protect.querySelector("input"),
    info: row2.querySelector(".segloop-info"), status: row4.querySelector(".segloop-status"),
    timelineLabel: row3.querySelector(".segloop-timeline-label"), span: propagate.querySelector("input"),
    title, overlay: document.createElement("canvas"),
    tool: "brush", objectId: 1, radius: 8, alpha: 0.5, hidden: false,
    view: { scale: 1, tx: 0, ty: 0 }, fitted: false,
    labels: null, base: null, history: [], future: [], stroke: null, polygon: [], editPoly: null, box: null,
    drag: null, hover: null, spaceDown: false, token: null, frameId: null, image: null,
    classes: {}, pendingAction: null, seen: new Set(), superpixels: null, latencies: [],
  };
}

// ------------------------------------------------------------------ label map editing

function paintPixel(state, i, erase) {
  const labels = state.labels;
  const id = state.objectId;
  if (erase) { if (labels[i] === id) labels[i] = 0; return; }
  if (labels[i] === id) return;
  if (state.protect.checked && labels[i] !== 0) return;
  labels[i] = id;
}

function grow(rect, x0, y0, x1, y1) {
  if (!rect) return [x0, y0, x1, y1];
  return [Math.min(rect[0], x0), Math.min(rect[1], y0), Math.max(rect[2], x1), Math.max(rect[3], y1)];
}

function stampDisc(state, cx, cy, radius, erase) {
  const { width, height } = state;
  const r = Math.max(0, Math.round(radius));
  const x0 = Math.max(0, Math.round(cx) - r), x1 = Math.min(width - 1, Math.round(cx) + r);
  const y0 = Math.max(0, Math.round(cy) - r), y1 = Math.min(height - 1, Math.round(cy) + r);
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const dx = x - Math.round(cx), dy = y - Math.round(cy);
      if (dx * dx + dy * dy <= r * r) paintPixel(state, y * width + x, erase);
    }
  }
  return x0 <= x1 && y0 <= y1 ? [x0, y0, x1, y1] : null;
}

function strokeSegment(state, from, to, radius, erase) {
  const distance = Math.hypot(to[0] - from[0], to[1] - from[1]);
  const steps = Math.max(1, Math.ceil(distance / Math.max(radius / 2, 0.5)));
  let rect = null;
  for (let s = 1; s <= steps; s++) {
    const t = s / steps;
    const got = stampDisc(state, from[0] + (to[0] - from[0]) * t, from[1] + (to[1] - from[1]) * t, radius, erase);
    if (got) rect = grow(rect, ...got);
  }
  return rect;
}

function fillPolygon(state, points, erase) {
  const { width, height } = state;
  const ys = points.map((p) => p[1]);
  const y0 = Math.max(0, Math.floor(Math.min(...ys))), y1 = Math.min(height - 1, Math.ceil(Math.max(...ys)));
  let rect = null;
  for (let y = y0; y <= y1; y++) {
    const cy = y + 0.5;
    const xs = [];
    for (let i = 0; i < points.length; i++) {
      const [ax, ay] = points[i];
      const [bx, by] = points[(i + 1) % points.length];
      if ((ay <= cy && by > cy) || (by <= cy && ay > cy)) xs.push(ax + ((cy - ay) / (by - ay)) * (bx - ax));
    }
    xs.sort((a, b) => a - b);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      const from = Math.max(0, Math.ceil(xs[k] - 0.5)), to = Math.min(width - 1, Math.floor(xs[k + 1] - 0.5));
      for (let x = from; x <= to; x++) paintPixel(state, y * width + x, erase);
      if (from <= to) rect = grow(rect, from, y, to, y);
    }
  }
  return rect;
}

// An undoable change: the rectangle's pixels before and after.
function cut(labels, width, rect) {
  const [x0, y0, x1, y1] = rect;
  const w = x1 - x0 + 1;
  const out = new Uint8Array(w * (y1 - y0 + 1));
  for (let y = y0; y <= y1; y++) out.set(labels.subarray(y * width + x0, y * width + x1 + 1), (y - y0) * w);
  return out;
}

function paste(labels, width, rect, pixels) {
  const [x0, y0, x1, y1] = rect;
  const w = x1 - x0 + 1;
  for (let y = y0; y <= y1; y++) labels.set(pixels.subarray((y - y0) * w, (y - y0 + 1) * w), y * width + x0);
}

function record(state, before, rect) {
  if (!rect) return null;
  const entry = { rect, before: cut(before, state.width, rect), after: cut(state.labels, state.width, rect) };
  state.history.push(entry);
  if (state.history.length > HISTORY_LIMIT) state.history.shift();
  state.future = [];
  changed(state, rect);
  return entry;
}

function fullRect(state) {
  return [0, 0, state.width - 1, state.height - 1];
}

function bake(state) {
  state.editPoly = null;
}

function undo(state) {
  if (state.polygon.length) { state.polygon.pop(); render(state); return; }
  bake(state);
  const entry = state.history.pop();
  if (!entry) return;
  paste(state.labels, state.width, entry.rect, entry.before);
  state.future.push(entry);
  changed(state, entry.rect);
}

function redo(state) {
  bake(state);
  const entry = state.future.pop();
  if (!entry) return;
  paste(state.labels, state.width, entry.rect, entry.after);
  state.history.push(entry);
  changed(state, entry.rect);
}

function wholeFrameEdit(state, apply) {
  bake(state);
  const before = state.labels.slice();
  apply(state.labels);
  record(state, before, fullRect(state));
}

function deleteObject(state) {
  const id = state.objectId;
  wholeFrameEdit(state, (labels) => { for (let i = 0; i < labels.length; i++) if (labels[i] === id) labels[i] = 0; });
}

function clearAll(state) {
  wholeFrameEdit(state, (labels) => labels.fill(0));
}

function applyProposal(state, proposal) {
  const mask = decodeRuns(proposal.runs, state.width * state.height);
  const [bx0, by0, bx1, by1] = proposal.box;
  const id = proposal.object_id;
  state.objectId = id;
  wholeFrameEdit(state, (labels) => {
    for (let y = by0; y < by1; y++) {
      for (let x = bx0; x < bx1; x++) {
        const i = y * state.width + x;
        if (mask[i]) paintPixel(state, i, false);
        else if (labels[i] === id) labels[i] = 0;
      }
    }
  });
}

function buildSuperpixels(state, payload) {
  const ids = decodeRuns(payload.runs, state.width * state.height, Int32Array);
  let count = 0;
  for (let i = 0; i < ids.length; i++) if (ids[i] + 1 > count) count = ids[i] + 1;
  const starts = new Int32Array(count + 1);
  for (let i = 0; i < ids.length; i++) starts[ids[i] + 1]++;
  for (let k = 0; k < count; k++) starts[k + 1] += starts[k];
  const fill = starts.slice(0, count);
  const members = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) members[fill[ids[i]]++] = i;
  state.superpixels = { frameId: payload.frame_id, ids, starts, members };
}

function paintSuperpixel(state, point, erase) {
  const sp = state.superpixels;
  const x = Math.floor(point[0]), y = Math.floor(point[1]);
  if (!sp || x < 0 || y < 0 || x >= state.width || y >= state.height) return null;
  const segment = sp.ids[y * state.width + x];
  if (state.stroke.segments.has(segment)) return null;
  state.stroke.segments.add(segment);
  let rect = null;
  for (let k = sp.starts[segment]; k < sp.starts[segment + 1]; k++) {
    const i = sp.members[k];
    paintPixel(state, i, erase);
    const px = i % state.width, py = (i - px) / state.width;
    rect = grow(rect, px, py, px, py);
  }
  return rect;
}

// ------------------------------------------------------------------ polygon vertex editing

function rasterizeEditPoly(state) {
  const poly = state.editPoly;
  state.labels.set(poly.before);
  fillPolygon(state, poly.points, false);
  poly.entry.after = cut(state.labels, state.width, poly.entry.rect);
  changed(state, poly.entry.rect);
}

function closePolygon(state) {
  if (state.polygon.length >= 3) {
    const before = state.labels.slice();
    fillPolygon(state, state.polygon, false);
    const entry = record(state, before, fullRect(state));
    if (entry) state.editPoly = { points: state.polygon.slice(), before, entry };
  }
  state.polygon = [];
  render(state);
}

function nearestVertex(state, point) {
  if (!state.editPoly) return -1;
  const reach = 8 / state.view.scale;
  let best = -1, bestDistance = reach;
  state.editPoly.points.forEach(([x, y], i) => {
    const d = Math.hypot(point[0] - x, point[1] - y);
    if (d <= bestDistance) { best = i; bestDistance = d; }
  });
  return best;
}

function nearestEdge(state, point) {
  if (!state.editPoly) return -1;
  const reach = 6 / state.view.scale;
  const pts = state.editPoly.points;
  for (let i = 0; i < pts.length; i++) {
    const [ax, ay] = pts[i], [bx, by] = pts[(i + 1) % pts.length];
    const length2 = (bx - ax) ** 2 + (by - ay) ** 2 || 1;
    const t = Math.max(0, Math.min(1, ((point[0] - ax) * (bx - ax) + (point[1] - ay) * (by - ay)) / length2));
    if (Math.hypot(point[0] - ax - t * (bx - ax), point[1] - ay - t * (by - ay)) <= reach) return i;
  }
  return -1;
}

// ------------------------------------------------------------------ drawing

function updateOverlay(state, rect) {
  const [x0, y0, x1, y1] = rect;
  const w = x1 - x0 + 1, h = y1 - y0 + 1;
  const image = new ImageData(w, h);
  const pixels = image.data;
  const { labels, palette, width } = state;
  for (let y = 0; y < h; y++) {
    let at = (y + y0) * width + x0;
    let out = y * w * 4;
    for (let x = 0; x < w; x++, at++, out += 4) {
      const v = labels[at];
      if (v) {
        const c = palette[v];
        pixels[out] = c[0]; pixels[out + 1] = c[1]; pixels[out + 2] = c[2]; pixels[out + 3] = 255;
      }
    }
  }
  state.overlay.getContext("2d").putImageData(image, x0, y0);
}

function changed(state, rect) {
  updateOverlay(state, rect);
  render(state);
  scheduleStore(state);
}

function isDirty(state) {
  if (!state.labels || !state.base) return false;
  if (state.classesDirty) return true;
  const a = state.labels, b = state.base;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return true;
  return false;
}

function fit(state) {
  const cw = state.viewport.clientWidth || state.width, ch = state.viewport.clientHeight || state.height;
  const scale = Math.min(cw / state.width, ch / state.height);
  state.view = { scale, tx: (cw - state.width * scale) / 2, ty: (ch - state.height * scale) / 2 };
}

function requestRender(state) {
  // pointer events can come faster than frames: draw once per frame, with everything the events changed
  if (state.renderQueued) return;
  state.renderQueued = true;
  requestAnimationFrame(() => { state.renderQueued = false; render(state); });
}

function render(state) {
  const { canvas, viewport, view } = state;
  const dpr = window.devicePixelRatio || 1;
  const cw = viewport.clientWidth, ch = viewport.clientHeight;
  if (canvas.width !== Math.round(cw * dpr) || canvas.height !== Math.round(ch * dpr)) {
    canvas.width = Math.round(cw * dpr);
    canvas.height = Math.round(ch * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.labels) return;
  ctx.setTransform(dpr * view.scale, 0, 0, dpr * view.scale, dpr * view.tx, dpr * view.ty);
  ctx.imageSmoothingEnabled = view.scale < 2;
  if (state.image) ctx.drawImage(state.image, 0, 0, state.width, state.height);
  if (!state.hidden) {
    ctx.globalAlpha = state.alpha;
    ctx.drawImage(state.overlay, 0, 0);
    ctx.globalAlpha = 1;
  }
  const unit = 1 / view.scale;
  ctx.lineWidth = 2 * unit;
  const color = state.colors[state.objectId] || "#ff0000";
  const outline = (points, close) => {
    ctx.beginPath();
    points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    if (close) ctx.closePath();
    ctx.stroke();
  };
  if (state.polygon.length) {
    ctx.strokeStyle = color;
    outline(state.hover ? [...state.polygon, state.hover] : state.polygon, false);
    ctx.fillStyle = color;
    for (const [x, y] of state.polygon) ctx.fillRect(x - 3 * unit, y - 3 * unit, 6 * unit, 6 * unit);
  }
  if (state.editPoly) {
    ctx.strokeStyle = "#ffffff";
    outline(state.editPoly.points, true);
    ctx.fillStyle = "#ffffff";
    for (const [x, y] of state.editPoly.points) ctx.fillRect(x - 4 * unit, y - 4 * unit, 8 * unit, 8 * unit);
  }
  if (state.box) {
    ctx.strokeStyle = "#ffffff";
    ctx.setLineDash([6 * unit, 4 * unit]);
    const [x0, y0, x1, y1] = state.box;
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    ctx.setLineDash([]);
  }
  if (state.hover && (state.tool === "brush" || state.tool === "erase")) {
    ctx.strokeStyle = state.tool === "erase" ? "#ffffff" : color;
    ctx.lineWidth = unit;
    ctx.beginPath();
    ctx.arc(state.hover[0], state.hover[1], state.radius, 0, 2 * Math.PI);
    ctx.stroke();
  }
  const pending = state.polygon.length ? ` · polygon: ${state.polygon.length} points (Enter closes, Esc cancels)` : "";
  state.info.textContent = `${state.history.length} edit(s)${pending} · zoom ${Math.round(view.scale * 100)}%`;
  state.root.dataset.edits = String(state.history.length);
  state.root.dataset.zoom = view.scale.toFixed(3);
  state.root.dataset.view = `${view.scale},${view.tx},${view.ty}`;
}

function drawTimeline(state) {
  const line = state.data.timeline;
  const canvas = state.timeline;
  if (!line) { canvas.hidden = true; return; }
  canvas.hidden = false;
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(22 * dpr);
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  const n = line.kinds.length;
  const cell = width / Math.max(n, 1);
  for (let i = 0; i < n; i++) {
    const kind = line.kinds[i];
    let fill = "#e6e6e6";
    if (kind === "s") fill = "#1f7a1f";
    else if (kind === "h") fill = "#4caf50";
    else if (kind === "d") {
      const d = Math.max(0, Math.min(1, (line.disagreement[i] ?? 0) / 0.5));
      fill = `rgb(${Math.round(80 + 175 * d)}, ${Math.round(170 - 120 * d)}, ${Math.round(230 - 190 * d)})`;
    }
    ctx.fillStyle = fill;
    ctx.fillRect(i * cell, 3, Math.max(cell - (cell > 3 ? 1 : 0), 1), 16);
  }
  ctx.strokeStyle = "#000000";
  ctx.lineWidth = 2;
  ctx.strokeRect(line.index * cell + 1, 1, Math.max(cell - 2, 2), 20);
  const drafts = [...line.kinds].filter((k) => k === "d").length;
  const keys = [...line.kinds].filter((k) => k === "h" || k === "s").length;
  state.timelineLabel.textContent = `Frame ${line.index + 1} of ${n} · ${keys} keyframe(s) · ${drafts} draft(s)` +
    (line.worst !== null && line.worst !== undefined ? ` · worst draft: frame #${line.worst}` : "") +
    " · blue = drafts agree, red = they drift";
  state.root.dataset.drafts = String(drafts);
  state.root.dataset.worst = line.worst === null || line.worst === undefined ? "" : String(line.worst);
}

function drawSide(state) {
  const conflict = state.data.conflict;
  state.side.hidden = !conflict;
  state.side.replaceChildren();
  if (!conflict) return;
  const preview = el("canvas", { class: "segloop-preview" });
  const scale = 320 / state.width;
  preview.width = 320;
  preview.height = Math.round(state.height * scale);
  Promise.all([loadImage(state.data.image), loadImage(conflict.overlay)]).then(([image, overlay]) => {
    const ctx = preview.getContext("2d");
    if (image) ctx.drawImage(image, 0, 0, preview.width, preview.height);
    ctx.globalAlpha = 0.5;
    if (overlay) ctx.drawImage(overlay, 0, 0, preview.width, preview.height);
  });
  state.side.append(
    el("strong", { text: "Someone saved a newer version" }), el("p", { text: conflict.message }), preview,
    el("p", { text: "Left: your edits (not saved). Above: the newer saved version." }),
    button("Keep mine (save over it)", "resolve-mine"), button("Take the newer version", "resolve-theirs"));
}

// ------------------------------------------------------------------ talking to Python

function storeKey(state) {
  return STORE_PREFIX + state.labelsFrameId;
}

function scheduleStore(state) {
  clearTimeout(state.storeTimer);
  state.storeTimer = setTimeout(() => storeLocally(state), 250);
}

function storeLocally(state) {
  if (state.labelsFrameId === undefined) return;
  try {
    if (!isDirty(state)) { localStorage.removeItem(storeKey(state)); return; }
    localStorage.setItem(storeKey(state), JSON.stringify({
      token: state.token, runs: encodeRuns(state.labels), classes: state.classes, at: Date.now() }));
  } catch (error) {
    state.status.textContent = "Could not keep a browser copy of your edits: save soon.";
  }
}

function restoreLocally(state) {
  let stored = null;
  try { stored = JSON.parse(localStorage.getItem(storeKey(state)) || "null"); } catch (error) { stored = null; }
  if (!stored || !stored.runs) return;
  const when = new Date(stored.at).toLocaleTimeString();
  const restore = () => {
    const before = state.labels.slice();
    state.labels.set(decodeRuns(stored.runs, state.width * state.height));
    state.classes = { ...state.classes, ...stored.classes };
    state.classesDirty = true;
    record(state, before, fullRect(state));
    state.status.textContent = `Restored your unsaved edits from ${when}; they are not saved yet.`;
  };
  if (stored.token === state.token) { restore(); return; }
  ask(state, `You left unsaved edits on this frame at ${when}, made on an older version of its masks.`, [
    ["Restore my edits", restore],
    ["Discard them", () => localStorage.removeItem(storeKey(state))],
  ]);
}

function send(state, kind, extra = {}, withLabels = true) {
  const id = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const action = { id, kind, token: state.token, frame_id: state.frameId, dirty: isDirty(state), ...extra };
  clearTimeout(state.storeTimer);
  if (withLabels) {
    action.labels = encodeRuns(state.labels);
    action.classes = state.classes;
    storeLocally(state);
  }
  state.pendingAction = action;
  state.root.dataset.busy = kind;
  state.setStateValue("action", action);
}

function ask(state, message, choices) {
  const box = state.dialog;
  box.replaceChildren(el("p", { text: message }));
  for (const [label, run] of choices) {
    const b = el("button", { type: "button", text: label });
    b.onclick = () => { box.hidden = true; run(); };
    box.append(b);
  }
  box.hidden = false;
  box.querySelector("button")?.focus();
}

function navigate(state, extra) {
  bake(state);
  if (!isDirty(state)) { send(state, "goto", { ...extra, save: false }, false); return; }
  ask(state, "This frame has unsaved edits.", [
    ["Save draft and go", () => send(state, "goto", { ...extra, save: true })],
    ["Discard edits and go", () => { localStorage.removeItem(storeKey(state)); send(state, "goto", { ...extra, save: false }, false); }],
    ["Stay here", () => {}],
  ]);
}

function reload(state) {
  bake(state);
  if (!isDirty(state)) { send(state, "reload", {}, false); return; }
  ask(state, "Reload drops your unsaved edits on this frame.", [
    ["Discard my edits and reload", () => { localStorage.removeItem(storeKey(state)); send(state, "reload", {}, false); }],
    ["Keep editing", () => {}],
  ]);
}

function propagate(state, direction) {
  bake(state);
  const count = Math.max(1, Math.min(200, parseInt(state.span.value, 10) || 10));
  state.status.textContent = `Propagating ${count} frame(s) ${direction > 0 ? "forward" : "backward"}…`;
  send(state, "propagate", { direction, count });
}

function runAction(state, name) {
  if (name === "undo") undo(state);
  else if (name === "redo") redo(state);
  else if (name === "delete") deleteObject(state);
  else if (name === "clear") clearAll(state);
  else if (name === "fit") { fit(state); render(state); }
  else if (name === "prev") navigate(state, { target: "prev" });
  else if (name === "next") navigate(state, { target: "next" });
  else if (name === "worst") navigate(state, { target: "worst" });
  else if (name === "reload") reload(state);
  else if (name.startsWith("save-")) { bake(state); send(state, "save", { status: name.slice(5) }); }
  else if (name === "propagate-forward") propagate(state, 1);
  else if (name === "propagate-back") propagate(state, -1);
  else if (name === "resolve-mine") send(state, "resolve", { choice: "mine" });
  else if (name === "resolve-theirs") { localStorage.removeItem(storeKey(state)); send(state, "resolve", { choice: "theirs" }, false); }
  else if (name === "add-class") {
    ask(state, "Name of the new class for object " + state.objectId, []);
    const input = el("input", { type: "text", class: "segloop-class-name" });
    const ok = el("button", { type: "button", text: "Add class" });
    ok.onclick = () => {
      state.dialog.hidden = true;
      if (input.value.trim()) send(state, "add_class", { name: input.value.trim(), object_id: state.objectId });
    };
    input.onkeydown = (event) => { if (event.key === "Enter") ok.onclick(); event.stopPropagation(); };
    state.dialog.append(input, ok, el("button", { type: "button", text: "Cancel", onclick: () => { state.dialog.hidden = true; } }));
    input.focus();
  }
}

// ------------------------------------------------------------------ input

function imagePoint(state, event) {
  const rect = state.canvas.getBoundingClientRect();
  const { scale, tx, ty } = state.view;
  return [(event.clientX - rect.left - tx) / scale, (event.clientY - rect.top - ty) / scale];
}

function setTool(state, tool) {
  if (tool !== "polygon") state.polygon = [];
  bake(state);
  state.tool = tool;
  state.root.dataset.tool = tool;
  if (tool === "smart" && (!state.superpixels || state.superpixels.frameId !== state.frameId)) {
    state.status.textContent = "Computing superpixels…";
    send(state, "superpixels", {}, false);
  }
  updateControls(state);
  render(state);
}

function setObject(state, id) {
  bake(state);
  state.objectId = id;
  updateControls(state);
  render(state);
}

function updateControls(state) {
  state.root.querySelectorAll("[data-tool-button]").forEach((b) => b.classList.toggle("active", b.dataset.toolButton === state.tool));
  const review = state.root.querySelector('[data-action="save-reviewed"]');
  review.disabled = state.data.may_review === false;
  review.title = review.disabled ? "Reviewers and admins mark frames reviewed" : "";
  state.objects.replaceChildren();
  for (let id = 1; id <= 9; id++) {
    const chip = el("button", { type: "button", text: String(id), class: id === state.objectId ? "chip active" : "chip",
                                title: `Object ${id} (${id})` });
    chip.style.borderColor = state.colors[id];
    chip.style.background = id === state.objectId ? state.colors[id] : "";
    chip.onclick = () => setObject(state, id);
    state.objects.append(chip);
  }
  const classes = state.data.classes || [];
  state.classSelect.replaceChildren(el("option", { value: "", text: "(no class)" }),
                                    ...classes.map((c) => el("option", { value: String(c.id), text: c.name })));
  const current = state.classes[state.objectId];
  state.classSelect.value = current === null || current === undefined ? "" : String(current);
  state.size.textContent = `Brush ${state.radius}px`;
  state.root.dataset.object = String(state.objectId);
  state.root.dataset.radius = String(state.radius);
}

function onPointerDown(state, event) {
  state.root.focus({ preventScroll: true });
  const point = imagePoint(state, event);
  if (event.button === 1 || (event.button === 0 && state.spaceDown)) {
    state.drag = { pan: true, x: event.clientX, y: event.clientY, tx: state.view.tx, ty: state.view.ty };
    state.canvas.setPointerCapture?.(event.pointerId);
    event.preventDefault();
    return;
  }
  if (event.button === 2 && state.editPoly) {
    const vertex = nearestVertex(state, point);
    if (vertex >= 0 && state.editPoly.points.length > 3) { state.editPoly.points.splice(vertex, 1); rasterizeEditPoly(state); }
    return;
  }
  if (event.button !== 0) return;
  state.canvas.setPointerCapture?.(event.pointerId);
  if (state.editPoly) {
    const vertex = nearestVertex(state, point);
    if (vertex >= 0) { state.drag = { vertex }; return; }
    const edge = nearestEdge(state, point);
    if (edge >= 0) {
      state.editPoly.points.splice(edge + 1, 0, point);
      state.drag = { vertex: edge + 1 };
      rasterizeEditPoly(state);
      return;
    }
    bake(state);
  }
  if (state.tool === "polygon") {
    const first = state.polygon[0];
    if (first && state.polygon.length >= 3 && Math.hypot(point[0] - first[0], point[1] - first[1]) <= 10 / state.view.scale) {
      closePolygon(state);
    } else {
      state.polygon.push(point);
      render(state);
    }
    return;
  }
  if (state.tool === "box") { state.box = [...point, ...point]; render(state); return; }
  const erase = state.tool === "erase" || (state.tool === "smart" && event.shiftKey);
  state.stroke = { before: state.labels.slice(), rect: null, last: point, erase, segments: new Set() };
  strokeTo(state, point, event);
}

function strokeTo(state, point, event) {
  const stroke = state.stroke;
  const rect = state.tool === "smart" ? paintSuperpixel(state, point, stroke.erase)
    : strokeSegment(state, stroke.last, point, state.radius, stroke.erase);
  stroke.last = point;
  if (rect) {
    stroke.rect = grow(stroke.rect, ...rect);
    updateOverlay(state, rect);
  }
  state.hover = point;
  requestRender(state);
  const start = event.timeStamp;
  const painted = performance.now() - start;
  requestAnimationFrame(() => {
    const onScreen = performance.now() - start;
    state.latencies.push(onScreen);
    if (state.latencies.length > 200) state.latencies.shift();
    state.root.dataset.strokeMs = onScreen.toFixed(1);
    state.root.dataset.strokeMaxMs = Math.max(...state.latencies).toFixed(1);
    const sorted = [...state.latencies].sort((a, b) => a - b);
    state.root.dataset.strokeMedianMs = sorted[Math.floor(sorted.length / 2)].toFixed(1);
    state.root.dataset.paintMs = painted.toFixed(1);
  });
}

function onPointerMove(state, event) {
  const point = imagePoint(state, event);
  const drag = state.drag;
  if (drag && drag.pan) {
    state.view.tx = drag.tx + event.clientX - drag.x;
    state.view.ty = drag.ty + event.clientY - drag.y;
    requestRender(state);
    return;
  }
  if (drag && drag.vertex !== undefined && state.editPoly) {
    state.editPoly.points[drag.vertex] = point;
    rasterizeEditPoly(state);
    return;
  }
  if (state.box) { state.box[2] = point[0]; state.box[3] = point[1]; render(state); return; }
  if (state.stroke) { strokeTo(state, point, event); return; }
  state.hover = point;
  requestRender(state);
}

function onPointerUp(state) {
  if (state.drag) { state.drag = null; scheduleStore(state); return; }
  if (state.box) {
    const [x0, y0, x1, y1] = state.box;
    state.box = null;
    render(state);
    if (Math.abs(x1 - x0) >= 4 && Math.abs(y1 - y0) >= 4) {
      state.status.textContent = "GrabCut is finding the object in the box…";
      send(state, "grabcut", { box: [x0, y0, x1, y1], object_id: state.objectId }, false);
    }
    return;
  }
  const stroke = state.stroke;
  if (!stroke) return;
  state.stroke = null;
  record(state, stroke.before, stroke.rect);
}

function onWheel(state, event) {
  event.preventDefault();
  const rect = state.canvas.getBoundingClientRect();
  const cx = event.clientX - rect.left, cy = event.clientY - rect.top;
  const { scale, tx, ty } = state.view;
  const next = Math.max(0.1, Math.min(40, scale * Math.exp(-event.deltaY * 0.0015)));
  state.view = { scale: next, tx: cx - ((cx - tx) / scale) * next, ty: cy - ((cy - ty) / scale) * next };
  render(state);
}

function typing(event) {
  const target = event.composedPath ? event.composedPath()[0] : event.target;
  const tag = (target && target.tagName) || "";
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
}

function onKey(state, event) {
  if (!state.root.isConnected || typing(event) || !state.dialog.hidden) return;
  const key = event.key;
  const ctrl = event.ctrlKey || event.metaKey;
  let handled = true;
  if (ctrl && (key === "z" || key === "Z") && event.shiftKey) redo(state);
  else if (ctrl && (key === "z" || key === "Z")) undo(state);
  else if (ctrl && (key === "y" || key === "Y")) redo(state);
  else if (ctrl && (key === "s" || key === "S")) runAction(state, "save-draft");
  else if (event.altKey && key === "ArrowRight") runAction(state, "next");
  else if (event.altKey && key === "ArrowLeft") runAction(state, "prev");
  else if (ctrl || event.altKey) handled = false;
  else if (TOOLS[key.toLowerCase()] && key.length === 1) setTool(state, TOOLS[key.toLowerCase()]);
  else if (key >= "1" && key <= "9") setObject(state, Number(key));
  else if (key === "[") { state.radius = Math.max(1, state.radius - (state.radius > 10 ? 2 : 1)); updateControls(state); render(state); }
  else if (key === "]") { state.radius = Math.min(120, state.radius + (state.radius >= 10 ? 2 : 1)); updateControls(state); render(state); }
  else if (key === "h" || key === "H") { state.hidden = !state.hidden; state.hide.checked = state.hidden; render(state); }
  else if (key === "0") { fit(state); render(state); }
  else if (key === "Delete") deleteObject(state);
  else if (key === "Enter" && state.polygon.length) closePolygon(state);
  else if (key === "Enter" && state.editPoly) { bake(state); render(state); }
  else if (key === "Escape") { state.polygon = []; state.box = null; bake(state); render(state); }
  else if (key === "Backspace" && state.polygon.length) { state.polygon.pop(); render(state); }
  else if (key === " ") { state.spaceDown = true; state.canvas.style.cursor = "grab"; }
  else handled = false;
  if (handled) { event.preventDefault(); event.stopPropagation(); }
}

function bind(state) {
  const { canvas, root } = state;
  canvas.onpointerdown = (event) => onPointerDown(state, event);
  canvas.onpointermove = (event) => onPointerMove(state, event);
  canvas.onpointerup = () => onPointerUp(state);
  canvas.onpointerleave = () => { state.hover = null; if (!state.drag && !state.stroke && !state.box) render(state); };
  canvas.oncontextmenu = (event) => event.preventDefault();
  canvas.onauxclick = (event) => event.preventDefault();
  canvas.addEventListener("wheel", (event) => onWheel(state, event), { passive: false });
  canvas.ondblclick = (event) => { event.preventDefault(); if (state.tool === "polygon") closePolygon(state); };
  root.addEventListener("click", (event) => {
    const target = event.target.closest ? event.target.closest("[data-action]") : null;
    if (target && root.contains(target)) runAction(state, target.dataset.action);
    const tool = event.target.closest ? event.target.closest("[data-tool-button]") : null;
    if (tool) setTool(state, tool.dataset.toolButton);
  });
  state.opacity.oninput = () => { state.alpha = Number(state.opacity.value) / 100; render(state); };
  state.hide.onchange = () => { state.hidden = state.hide.checked; render(state); };
  state.classSelect.onchange = () => {
    state.classes[state.objectId] = state.classSelect.value === "" ? null : Number(state.classSelect.value);
    state.classesDirty = true;
    scheduleStore(state);
  };
  state.timeline.onclick = (event) => {
    const line = state.data.timeline;
    if (!line) return;
    const rect = state.timeline.getBoundingClientRect();
    const index = Math.floor(((event.clientX - rect.left) / rect.width) * line.kinds.length);
    if (index !== line.index) navigate(state, { target: "index", index });
  };
  const keydown = (event) => onKey(state, event);
  const keyup = (event) => { if (event.key === " ") { state.spaceDown = false; state.canvas.style.cursor = ""; } };
  document.addEventListener("keydown", keydown, true);
  document.addEventListener("keyup", keyup, true);
  window.addEventListener("pagehide", () => storeLocally(state));
  const observer = new ResizeObserver(() => { if (!state.fitted) fit(state); render(state); drawTimeline(state); });
  observer.observe(state.viewport);
  return () => {
    document.removeEventListener("keydown", keydown, true);
    document.removeEventListener("keyup", keyup, true);
    observer.disconnect();
    storeLocally(state);
  };
}

// ------------------------------------------------------------------ data from Python

function acknowledge(state, data) {
  if (data.acknowledged && state.pendingAction && data.acknowledged === state.pendingAction.id) {
    const done = state.pendingAction;
    state.pendingAction = null;
    delete state.root.dataset.busy;
    if (data.saved && done.labels) localStorage.removeItem(STORE_PREFIX + done.frame_id);
  }
}

function acceptData(state, data) {
  state.data = data;
  state.palette = data.palette.map(hexToRgb);
  state.colors = data.palette;
  acknowledge(state, data);
  const proposal = data.proposal;
  if (proposal && !state.seen.has(proposal.id) && proposal.frame_id === data.frame_id && state.token === data.token) {
    state.seen.add(proposal.id);
    applyProposal(state, proposal);
    state.status.textContent = "GrabCut proposal applied: edit it or undo (Ctrl+Z).";
  }
  if (data.superpixels && data.superpixels.frame_id === data.frame_id &&
      (!state.superpixels || state.superpixels.frameId !== data.frame_id)) {
    buildSuperpixels(state, data.superpixels);
    state.status.textContent = "Superpixels ready: paint with whole segments (Shift erases).";
  }
  if (data.assign) {
    const key = `assign-${data.assign.id}`;
    if (!state.seen.has(key)) {
      state.seen.add(key);
      state.classes[data.assign.object_id] = data.assign.class_id;
      state.classesDirty = true;
    }
  }
  if (data.message) state.status.textContent = data.message;
  state.root.dataset.frame = String(data.frame_id);
  updateControls(state);
  drawTimeline(state);
  drawSide(state);
}

function loadFrame(state, data) {
  clearTimeout(state.storeTimer);
  state.token = data.token;
  state.frameId = data.frame_id;
  state.width = data.width;
  state.height = data.height;
  state.root.dataset.ready = "loading";
  state.title.textContent = data.title || "";
  const size = data.width * data.height;
  const base = decodeRuns(data.labels, size);
  return loadImage(data.image).then((image) => {
    if (state.token !== data.token) return;
    state.image = image;
    state.base = base;
    state.labels = base.slice();
    state.labelsFrameId = data.frame_id;
    state.classes = { ...(data.object_classes || {}) };
    state.classesDirty = false;
    state.history = [];
    state.future = [];
    state.polygon = [];
    state.editPoly = null;
    state.stroke = null;
    state.overlay.width = data.width;
    state.overlay.height = data.height;
    state.overlay.getContext("2d").clearRect(0, 0, data.width, data.height);
    updateOverlay(state, fullRect(state));
    if (!state.fitted || state.lastSize !== `${data.width}x${data.height}`) { fit(state); state.fitted = true; }
    state.lastSize = `${data.width}x${data.height}`;
    restoreLocally(state);
    updateControls(state);
    render(state);
    state.root.dataset.ready = "ready";
    state.root.dataset.token = data.token;
  });
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let state = parentElement.__segloopCanvas;
  if (!state) {
    state = build(parentElement);
    parentElement.__segloopCanvas = state;
    state.unbind = bind(state);
    state.root.dataset.tool = state.tool;
  }
  state.setStateValue = setStateValue;
  state.data = data;
  state.palette = data.palette.map(hexToRgb);
  state.colors = data.palette;
  const fresh = state.token !== data.token;
  acknowledge(state, data);  // before a new frame looks for a browser copy: a saved one is gone by then
  if (fresh) {
    state.dialog.hidden = true;
    state.superpixels = state.superpixels && state.superpixels.frameId === data.frame_id ? state.superpixels : null;
    loadFrame(state, data).then(() => acceptData(state, data));
  } else {
    acceptData(state, data);
    render(state);
  }
  return () => {
    if (!parentElement.isConnected) {
      state.unbind?.();
      delete parentElement.__segloopCanvas;
    }
  };
}
