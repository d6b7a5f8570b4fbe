// The film viewer of Explain and Review (st.components.v2; data: cxrlib.viz.viewer.viewer_data).
// Panels of one film side by side that zoom and pan together: mouse wheel or + / - to zoom,
// drag or the arrow keys to pan (on a touch screen: one finger pans, two pinch), double click or
// 0 to show the whole film. The view is kept
// while the film (data.revision) is the same, across reruns and across leaving the page.
// The hover readout says the film pixel and, on a heatmap, its evidence there.
// The root carries data-view="x0,y0,x1,y1" (the film pixels the first panel shows) for tests.

const views = new Map(); // data.key -> {revision, cx, cy, z}: the view, kept across mounts
const MAX_ZOOM = 64; // times the whole-film fit: a 3000 px film shows about 50 pixels
const MIN_ZOOM = 0.5;
const MAX_SCREEN_PX = 8; // ... or more, until a film pixel is 8 screen pixels (a 40 x 20000 strip)

function el(tag, cls, parent) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (parent) parent.appendChild(node);
  return node;
}

function decodeHeat(heat) {
  const raw = atob(heat.values);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

function colourBar(bar, parent) {
  const wrap = el("div", "cxv-bar", parent);
  const strip = el("div", "cxv-strip", wrap);
  strip.style.background = `linear-gradient(to right, ${bar.colours.join(", ")})`;
  const pct = (v) => `${Math.round(v * 100)} %`;
  if (bar.threshold > 0) {
    const hidden = el("div", "cxv-below", strip);
    hidden.style.width = `${bar.threshold * 100}%`;
    hidden.title = `not drawn below ${pct(bar.threshold)}`;
  }
  for (const level of bar.levels || []) { // contour mode: where its lines are
    const mark = el("div", "cxv-level", strip);
    mark.style.left = `${level * 100}%`;
  }
  const ticks = el("div", "cxv-ticks", wrap);
  for (const t of [0, 25, 50, 75, 100]) el("span", "", ticks).textContent = `${t} %`;
  const title = el("div", "cxv-bar-title", wrap);
  let note = bar.threshold > 0 ? ` (below ${pct(bar.threshold)} not drawn)` : "";
  if (bar.contour) {
    note = bar.levels.length ? ` (lines at ${bar.levels.map(pct).join(", ")})` : " (no line drawn)";
  }
  title.textContent = bar.title + note;
}

// An image already decoded for the last drawing, reused when the same PNG comes again (a change
// of method or window redraws the panels, and the film would be decoded anew for each).
function image(cls, src, old) {
  const found = old.get(src);
  if (found && found.length) {
    const node = found.pop();
    node.className = cls;
    node.removeAttribute("style");
    return node;
  }
  const node = el("img", cls);
  node.alt = "";
  node.draggable = false;
  node.src = src;
  return node;
}

function build(root, state) {
  const data = state.data;
  const focused = [...root.querySelectorAll(".cxv-port")].indexOf(document.activeElement);
  const old = new Map();
  root.querySelectorAll("img").forEach((node) => {
    const list = old.get(node.src) || [];
    list.push(node);
    old.set(node.src, list);
  });
  root.replaceChildren();
  root.style.setProperty("--cxv-height", `${data.panel_height}px`);
  const row = el("div", "cxv-row", root);
  state.panels = data.panels.map((panel, i) => {
    const box = el("div", "cxv-panel", row);
    const title = el("div", "cxv-title", box);
    panel.title.forEach((line, j) => {
      if (j) el("br", "", title);
      title.appendChild(document.createTextNode(line));
    });
    const port = el("div", "cxv-port", box);
    port.tabIndex = 0;
    port.setAttribute("role", "img");
    port.setAttribute("aria-label", `${panel.title.join(", ")}: the film, ${data.width} x ${data.height} px`);
    const stage = el("div", "cxv-stage", port);
    stage.style.width = `${data.width}px`;
    stage.style.height = `${data.height}px`;
    const film = stage.appendChild(image("cxv-film", data.film, old));
    let heat = null;
    if (panel.layer) {
      const layer = stage.appendChild(image("cxv-layer", panel.layer, old));
      const [x0, y0, x1, y1] = panel.box;
      Object.assign(layer.style, {left: `${x0}px`, top: `${y0}px`, width: `${x1 - x0}px`,
                                  height: `${y1 - y0}px`});
      heat = {values: decodeHeat(panel.heat), w: panel.heat.w, h: panel.heat.h, box: panel.box,
              layer, drawn: null};
    }
    listen(port, state, i);
    return {port, stage, film, heat};
  });
  state.readout = el("div", "cxv-readout", root);
  state.readout.textContent = "Wheel or + / - to zoom, drag or arrows to pan, double click or 0 for the whole film.";
  if (data.bar) colourBar(data.bar, root);
  place(state);
  if (focused >= 0 && state.panels[focused]) { // the keys go on working after a redraw
    state.panels[focused].port.focus({preventScroll: true});
  }
}

// Whether the layer is drawn at one of its pixels (its alpha, read once from the decoded PNG):
// the readout says what the eye sees, whatever rounding put a value on either side of the cut.
function drawnAt(heat, fx, fy) {
  if (!heat.drawn) {
    const {layer} = heat;
    if (!layer.complete || !layer.naturalWidth) return null;
    const canvas = document.createElement("canvas");
    canvas.width = layer.naturalWidth;
    canvas.height = layer.naturalHeight;
    const context = canvas.getContext("2d", {willReadFrequently: true});
    context.drawImage(layer, 0, 0);
    heat.drawn = {w: canvas.width, h: canvas.height,
                  alpha: context.getImageData(0, 0, canvas.width, canvas.height).data};
  }
  const {w, h, alpha} = heat.drawn;
  const lx = Math.min(w - 1, Math.floor(fx * w)), ly = Math.min(h - 1, Math.floor(fy * h));
  return alpha[(ly * w + lx) * 4 + 3] > 0;
}

function fit(state, port) {
  const w = port.clientWidth || 1, h = port.clientHeight || 1;
  return {w, h, s: Math.min(w / state.data.width, h / state.data.height)};
}

function place(state) {
  const v = state.view;
  state.panels.forEach(({port, stage, film}, i) => {
    const {w, h, s: base} = fit(state, port);
    const s = base * v.z;
    const tx = w / 2 - v.cx * s, ty = h / 2 - v.cy * s;
    stage.style.transform = `translate(${tx}px, ${ty}px) scale(${s})`;
    film.style.imageRendering = s > 1.5 ? "pixelated" : "auto";
    if (i === 0) {
      const edges = [-tx / s, -ty / s, (w - tx) / s, (h - ty) / s];
      state.root.dataset.view = edges.map((e) => e.toFixed(1)).join(",");
    }
  });
  views.set(state.data.key, {...v, revision: state.data.revision});
}

function filmPoint(state, port, event) {
  const r = port.getBoundingClientRect();
  const {w, h, s: base} = fit(state, port);
  const s = base * state.view.z;
  // from the padding box's corner, where the film is placed (inside the panel's border)
  const mx = event.clientX - r.left - port.clientLeft, my = event.clientY - r.top - port.clientTop;
  return {mx, my, w, h, s, x: state.view.cx + (mx - w / 2) / s, y: state.view.cy + (my - h / 2) / s};
}

function zoomAt(state, port, factor, event) {
  const v = state.view;
  const most = Math.max(MAX_ZOOM, MAX_SCREEN_PX / fit(state, port).s);
  const z = Math.min(most, Math.max(MIN_ZOOM, v.z * factor));
  if (event) { // keep the film point under the pointer where it is
    const p = filmPoint(state, port, event);
    const s = fit(state, port).s * z;
    v.cx = p.x - (p.mx - p.w / 2) / s;
    v.cy = p.y - (p.my - p.h / 2) / s;
  }
  v.z = z;
  place(state);
}

function reset(state) {
  Object.assign(state.view, {cx: state.data.width / 2, cy: state.data.height / 2, z: 1});
  place(state);
}

function readout(state, i, event) {
  const port = state.panels[i].port;
  const p = filmPoint(state, port, event);
  const {width, height} = state.data;
  if (p.x < 0 || p.y < 0 || p.x >= width || p.y >= height) {
    state.readout.textContent = "Outside the film.";
    return;
  }
  let text = `x ${Math.floor(p.x)}, y ${Math.floor(p.y)}`;
  const heat = state.panels[i].heat;
  if (heat) {
    const [x0, y0, x1, y1] = heat.box;
    if (p.x >= x0 && p.x < x1 && p.y >= y0 && p.y < y1) {
      const fx = (p.x - x0) / (x1 - x0), fy = (p.y - y0) / (y1 - y0);
      const value = heat.values[Math.floor(fy * heat.h) * heat.w + Math.floor(fx * heat.w)] / 255;
      text += ` · evidence ${Math.round(value * 100)} % of the maximum`;
      const bar = state.data.bar;
      if (bar && !bar.contour && drawnAt(heat, fx, fy) === false) {
        text += " (below the threshold: not drawn)";
      }
    } else {
      text += " · outside what the model saw";
    }
  }
  state.readout.textContent = text;
}

function listen(port, state, i) {
  const pointers = new Map(); // pointerId -> {x, y}: one pans, two pinch
  let pinch = null;
  port.addEventListener("wheel", (event) => {
    event.preventDefault();
    zoomAt(state, port, Math.exp(-event.deltaY / 1000), event);
  }, {passive: false});
  port.addEventListener("pointerdown", (event) => {
    pointers.set(event.pointerId, {x: event.clientX, y: event.clientY});
    port.setPointerCapture(event.pointerId);
    port.classList.add("cxv-dragging");
    pinch = null;
  });
  port.addEventListener("pointermove", (event) => {
    const last = pointers.get(event.pointerId);
    if (last && pointers.size === 1) { // pan
      const s = fit(state, port).s * state.view.z;
      state.view.cx -= (event.clientX - last.x) / s;
      state.view.cy -= (event.clientY - last.y) / s;
      place(state);
    }
    if (last) pointers.set(event.pointerId, {x: event.clientX, y: event.clientY});
    if (last && pointers.size === 2) { // pinch: zoom about the fingers' middle, which it follows
      const [a, b] = [...pointers.values()];
      const now = {d: Math.hypot(a.x - b.x, a.y - b.y), x: (a.x + b.x) / 2, y: (a.y + b.y) / 2};
      if (pinch && pinch.d > 0) {
        const s = fit(state, port).s * state.view.z;
        state.view.cx -= (now.x - pinch.x) / s;
        state.view.cy -= (now.y - pinch.y) / s;
        zoomAt(state, port, now.d / pinch.d, {clientX: now.x, clientY: now.y});
      }
      pinch = now;
    }
    readout(state, i, event);
  });
  const stop = (event) => {
    pointers.delete(event.pointerId);
    pinch = null;
    if (!pointers.size) port.classList.remove("cxv-dragging");
  };
  port.addEventListener("pointerup", stop);
  port.addEventListener("pointercancel", stop);
  port.addEventListener("dblclick", () => reset(state));
  port.addEventListener("keydown", (event) => {
    const step = 40 / (fit(state, port).s * state.view.z);
    const moves = {ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step]};
    if (event.key === "+" || event.key === "=") zoomAt(state, port, 1.25);
    else if (event.key === "-") zoomAt(state, port, 0.8);
    else if (event.key === "0") reset(state);
    else if (moves[event.key]) {
      state.view.cx += moves[event.key][0];
      state.view.cy += moves[event.key][1];
      place(state);
    } else return;
    event.preventDefault();
  });
}

export default function (component) {
  const {parentElement, data} = component;
  let root = parentElement.querySelector(".cxv");
  if (!root) {
    root = el("div", "cxv", parentElement);
    root.state = {root, view: null};
    const resized = new ResizeObserver(() => root.state.panels && place(root.state));
    resized.observe(root);
    root.cleanup = () => resized.disconnect();
  }
  const state = root.state;
  const kept = views.get(data.key);
  if (!state.view || state.data.revision !== data.revision) {
    state.view = kept && kept.revision === data.revision
      ? {cx: kept.cx, cy: kept.cy, z: kept.z}
      : {cx: data.width / 2, cy: data.height / 2, z: 1};
  }
  state.data = data;
  build(root, state);
  return () => root.cleanup();
}
