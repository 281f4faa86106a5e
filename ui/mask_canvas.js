// segloop mask canvas (Streamlit components v2): paint / erase with a brush, draw polygons, undo.
// The edits are sent to Python as {token, ops}; Python rasterises them (cv2) onto the label map.
// Coordinates in ops are image pixels. The DOM and the edit list live on the component's parent element,
// so reruns with the same token keep the edits, and a new token (new frame, saved, reloaded) clears them.

function loadImage(src) {
  return new Promise((resolve) => {
    if (!src) { resolve(null); return; }
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => resolve(null);
    image.src = src;
  });
}

function build(parentElement) {
  const root = document.createElement("div");
  root.className = "segloop-canvas";
  root.tabIndex = 0;
  const toolbar = document.createElement("div");
  toolbar.className = "segloop-toolbar";
  const undo = document.createElement("button");
  undo.type = "button";
  undo.textContent = "Undo (Z)";
  undo.dataset.action = "undo";
  const clear = document.createElement("button");
  clear.type = "button";
  clear.textContent = "Clear edits";
  clear.dataset.action = "clear";
  const info = document.createElement("span");
  info.className = "segloop-info";
  toolbar.append(undo, clear, info);
  const canvas = document.createElement("canvas");
  canvas.className = "segloop-surface";
  canvas.dataset.testid = "segloop-mask-canvas";
  root.append(toolbar, canvas);
  parentElement.appendChild(root);
  return { root, canvas, undo, clear, info, labels: document.createElement("canvas"),
           ops: [], current: null, polygon: [], hover: null, token: null, image: null, base: null };
}

function drawOp(ctx, op, color) {
  ctx.save();
  ctx.globalCompositeOperation = op.erase ? "destination-out" : "source-over";
  ctx.fillStyle = color;
  ctx.strokeStyle = color;
  if (op.tool === "polygon") {
    ctx.beginPath();
    op.points.forEach(([x, y], i) => (i ? ctx.lineTo(x + 0.5, y + 0.5) : ctx.moveTo(x + 0.5, y + 0.5)));
    ctx.closePath();
    ctx.fill();
  } else {
    ctx.lineWidth = Math.max(2 * op.radius, 1);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    op.points.forEach(([x, y], i) => (i ? ctx.lineTo(x + 0.5, y + 0.5) : ctx.moveTo(x + 0.5, y + 0.5)));
    if (op.points.length === 1) {
      const [x, y] = op.points[0];
      ctx.arc(x + 0.5, y + 0.5, op.radius + 0.5, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.stroke();
    }
  }
  ctx.restore();
}

function colorOf(state, id) {
  return (state.data.palette && state.data.palette[String(id)]) || state.data.color || "#ff0000";
}

function rebuildLabels(state) {
  const { labels } = state;
  const ctx = labels.getContext("2d");
  ctx.clearRect(0, 0, labels.width, labels.height);
  if (state.base) ctx.drawImage(state.base, 0, 0, labels.width, labels.height);
  for (const op of state.ops) drawOp(ctx, op, colorOf(state, op.object_id));
}

function render(state) {
  const { canvas, data } = state;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (state.image) ctx.drawImage(state.image, 0, 0, canvas.width, canvas.height);
  ctx.save();
  ctx.globalAlpha = data.alpha ?? 0.5;
  ctx.drawImage(state.labels, 0, 0);
  if (state.current) drawOp(ctx, state.current, colorOf(state, state.current.object_id));
  ctx.restore();
  const scale = canvas.width / Math.max(canvas.clientWidth, 1);
  if (state.polygon.length) {
    ctx.save();
    ctx.strokeStyle = data.erase ? "#ffffff" : data.color;
    ctx.lineWidth = 2 * scale;
    ctx.beginPath();
    state.polygon.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    if (state.hover) ctx.lineTo(state.hover[0], state.hover[1]);
    ctx.stroke();
    ctx.fillStyle = ctx.strokeStyle;
    for (const [x, y] of state.polygon) ctx.fillRect(x - 3 * scale, y - 3 * scale, 6 * scale, 6 * scale);
    ctx.restore();
  }
  if (state.hover && data.tool === "brush") {
    ctx.save();
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = scale;
    ctx.beginPath();
    ctx.arc(state.hover[0], state.hover[1], data.radius, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.restore();
  }
  const pending = state.polygon.length ? ` · polygon: ${state.polygon.length} points (Enter or click the first point to close, Esc to cancel)` : "";
  state.info.textContent = `${state.ops.length} edit(s)${pending}`;
}

function imagePoint(state, event) {
  const rect = state.canvas.getBoundingClientRect();
  const x = ((event.clientX - rect.left) / Math.max(rect.width, 1)) * state.canvas.width;
  const y = ((event.clientY - rect.top) / Math.max(rect.height, 1)) * state.canvas.height;
  return [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
}

function send(state) {
  state.setStateValue("edits", { token: state.token, ops: state.ops });
}

function commit(state, op) {
  state.ops.push(op);
  drawOp(state.labels.getContext("2d"), op, colorOf(state, op.object_id));
  render(state);
  send(state);
}

function closePolygon(state) {
  if (state.polygon.length >= 3) {
    commit(state, { tool: "polygon", erase: !!state.data.erase, object_id: state.data.object_id,
                    points: state.polygon.slice() });
  }
  state.polygon = [];
  render(state);
}

function undo(state) {
  if (state.polygon.length) {
    state.polygon.pop();
    render(state);
    return;
  }
  if (!state.ops.length) return;
  state.ops.pop();
  rebuildLabels(state);
  render(state);
  send(state);
}

function bind(state) {
  const { canvas, root } = state;
  canvas.onpointerdown = (event) => {
    if (event.button !== 0) return;
    root.focus({ preventScroll: true });
    const point = imagePoint(state, event);
    const data = state.data;
    if (data.tool === "polygon") {
      const first = state.polygon[0];
      const near = 10 * canvas.width / Math.max(canvas.clientWidth, 1);
      if (first && state.polygon.length >= 3 && Math.hypot(point[0] - first[0], point[1] - first[1]) <= near) {
        closePolygon(state);
      } else {
        state.polygon.push(point);
        render(state);
      }
      return;
    }
    canvas.setPointerCapture?.(event.pointerId);
    state.current = { tool: "brush", erase: !!data.erase, object_id: data.object_id, radius: data.radius,
                      points: [point] };
    render(state);
  };
  canvas.onpointermove = (event) => {
    const point = imagePoint(state, event);
    state.hover = point;
    if (state.current) {
      const last = state.current.points[state.current.points.length - 1];
      if (Math.hypot(point[0] - last[0], point[1] - last[1]) >= 1) state.current.points.push(point);
    }
    render(state);
  };
  canvas.onpointerup = () => {
    if (!state.current) return;
    const op = state.current;
    state.current = null;
    commit(state, op);
  };
  canvas.onpointerleave = () => {
    state.hover = null;
    if (state.current) canvas.onpointerup();
    else render(state);
  };
  canvas.ondblclick = (event) => {
    event.preventDefault();
    if (state.data.tool === "polygon") closePolygon(state);
  };
  root.onkeydown = (event) => {
    if (event.key === "z" || event.key === "Z") { undo(state); event.preventDefault(); event.stopPropagation(); }
    else if (event.key === "Enter" && state.polygon.length) { closePolygon(state); event.preventDefault(); }
    else if (event.key === "Escape" && state.polygon.length) { state.polygon = []; render(state); }
  };
  state.undo.onclick = () => undo(state);
  state.clear.onclick = () => {
    state.ops = [];
    state.polygon = [];
    rebuildLabels(state);
    render(state);
    send(state);
  };
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let state = parentElement.__segloopCanvas;
  if (!state) {
    state = build(parentElement);
    parentElement.__segloopCanvas = state;
  }
  state.data = data;
  state.setStateValue = setStateValue;
  state.root.dataset.tool = data.tool;
  state.canvas.style.maxWidth = `${data.display_width || data.width}px`;
  bind(state);
  if (state.token !== data.token) {
    state.token = data.token;
    state.ops = [];
    state.current = null;
    state.polygon = [];
    state.canvas.width = data.width;
    state.canvas.height = data.height;
    state.labels.width = data.width;
    state.labels.height = data.height;
    state.root.dataset.ready = "loading";
    const token = data.token;
    Promise.all([loadImage(data.image), loadImage(data.overlay)]).then(([image, base]) => {
      if (state.token !== token) return;
      state.image = image;
      state.base = base;
      rebuildLabels(state);
      render(state);
      state.root.dataset.ready = "ready";
      state.root.dataset.token = token;
    });
  } else if (state.root.dataset.ready === "ready") {
    render(state);
  }
}
