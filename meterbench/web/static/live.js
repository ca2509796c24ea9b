// meterbench live view: one EventSource on /events, a state object kept from its events, and a
// render(state) the page defines. No library, nothing fetched from elsewhere (docs/live-view.md).
"use strict";
const live = {
  session: null, phase: "connecting", verdict: null, instruments: [], points: [], current_point: null,
  verdicts: {}, certificates: {}, reading: null, telemetry: null, warnings: [], events: 0, lastPoint: {},
  // frames: camera -> its latest `frame` event; register: instrument -> its latest register read
  // ({t_s, volume_l}); pointRegister: instrument -> its first read in the running point; refTrack:
  // [t_s, totaliser_l] of the reference, for the reference volume over the same span as the register
  frames: {}, frameSeq: 0, latencies: [], register: {}, pointRegister: {}, pointT: null, refTrack: [],
};
function verdictKey(v) { return v.instrument + "\u0000" + v.point; }
function applyEvent(ev) {
  live.events += 1;
  if (ev.type !== "frame") live.changed = true;  // pages redraw their tables on a change, frames alone at most 4 Hz
  if (ev.type === "state") {
    for (const [k, v] of Object.entries(ev)) {
      if (k === "verdicts") { for (const x of v) live.verdicts[verdictKey(x)] = x; }
      else if (k === "certificates") { for (const x of v) live.certificates[x.instrument] = x; }
      else if (k !== "type") live[k] = v;
    }
  } else if (ev.type === "verdict") {
    live.verdicts[verdictKey(ev)] = ev;
  } else if (ev.type === "certificate") {
    live.certificates[ev.instrument] = ev;  // instrument -> its certificate (number, code, QR as inline SVG)
  } else if (ev.type === "frame") {
    live.frames[ev.camera] = ev;
    live.frameSeq += 1;
    const r = ev.reading;
    if (r && r.ok && ev.instrument) {
      const read = { t_s: ev.read_t_s, volume_l: r.volume_l };
      live.register[ev.instrument] = read;
      if (live.pointT !== null && read.t_s >= live.pointT && !live.pointRegister[ev.instrument]) live.pointRegister[ev.instrument] = read;
    }
  } else if (ev.type === "reading") {
    live.reading = ev;
    live.refTrack.push([ev.t_s, ev.totaliser_l]);
    if (live.refTrack.length > 4000) live.refTrack.splice(0, 2000);
  } else if (ev.type === "telemetry") {
    live.telemetry = ev;
  } else if (ev.type === "point") {
    live.lastPoint = ev;
    if (ev.phase === "running") { live.pointT = ev.t_s; live.pointRegister = {}; } else { live.pointT = null; }
  } else if (ev.type === "warning") {
    live.warnings.push(ev);
  }
}
function refAt(t) {
  // the reference totaliser (L) at session time t, linear between its readings; null outside them
  const track = live.refTrack;
  if (!track.length || t < track[0][0] || t > track[track.length - 1][0]) return null;
  let lo = 0, hi = track.length - 1;
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (track[mid][0] <= t) lo = mid; else hi = mid; }
  const [t0, v0] = track[lo], [t1, v1] = track[hi];
  return t1 === t0 ? v0 : v0 + (v1 - v0) * (t - t0) / (t1 - t0);
}
function runningPoint(instrument) {
  // the running point of one instrument: the register as read since its first read in the point, the
  // reference over the same span, and the error between them (%): display figures, provisional
  const first = live.pointRegister[instrument], now = live.register[instrument];
  if (live.pointT === null || !first || !now || now.t_s <= first.t_s) return null;
  const a = refAt(first.t_s), b = refAt(now.t_s);
  if (a === null || b === null) return null;
  const register_l = now.volume_l - first.volume_l, reference_l = b - a;
  return { register_l, reference_l, error_pct: reference_l > 0 ? 100 * (register_l / reference_l - 1) : null };
}
function fmt(x, digits) { return (x === null || x === undefined) ? "\u2014" : Number(x).toFixed(digits); }
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "style") node.style.cssText = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
const SVG = "http://www.w3.org/2000/svg";
const cameraCards = {};
function cameraCard(host, camera, ev) {
  if (cameraCards[camera]) return cameraCards[camera];
  const img = el("img", { class: "frame", alt: "camera " + camera });
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "boxes");
  const info = el("div", { class: "frame-info" });
  const stamp = el("div", { class: "small" });
  const card = el("div", { class: "camera", "data-camera": camera },
    el("div", { class: "cam-title" }, `${camera}` + (ev.instrument ? ` · ${ev.instrument}` : "")),
    el("div", { class: "frame-wrap" }, img, svg), stamp, info);
  host.append(card);
  return (cameraCards[camera] = { img, svg, info, stamp, shown: null, readShown: undefined });
}
function svgNode(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
function showFrames(host) {
  // per camera its latest frame, the element boxes with value and confidence, the alignment, the
  // refused frames by reason; each frame's capture-to-screen time goes into live.latencies (ms)
  for (const [camera, ev] of Object.entries(live.frames)) {
    const card = cameraCard(host, camera, ev);
    if (card.shown === ev) continue;
    card.shown = ev;
    card.img.src = "data:image/jpeg;base64," + ev.jpeg;
    if (ev.captured_unix) {
      card.img.decode().then(() => requestAnimationFrame(() => {
        live.latencies.push(Date.now() - ev.captured_unix * 1000);
        if (live.latencies.length > 100000) live.latencies.splice(0, 50000);
      })).catch(() => {});
    }
    const r = ev.reading;
    card.stamp.textContent = `frame t = ${fmt(ev.t_s, 2)} s` + (r ? `, read at ${fmt(ev.read_t_s, 2)} s` : "");
    if (card.readShown === ev.read_t_s) continue;  // boxes and figures change with a new reading only
    card.readShown = ev.read_t_s;
    card.svg.setAttribute("viewBox", `0 0 ${ev.width} ${ev.height}`);
    card.svg.replaceChildren(...(r ? r.elements.filter((e) => e.box).flatMap((e) => [
      svgNode("polygon", { points: e.box.map((p) => p.join(",")).join(" "), class: e.readable ? "ok" : "bad" }),
      svgNode("text", { x: e.box[3][0], y: e.box[3][1] + 10, class: e.readable ? "ok" : "bad" },
        e.value === null ? "?" : `${e.value.toFixed(1)} ${Math.round(100 * (e.confidence || 0))}%`),
    ]) : []));
    const a = r ? r.alignment : null;
    const refused = Object.entries(ev.refused || {});
    card.info.replaceChildren(
      el("div", { "data-register": r && r.ok ? r.volume_l : "" },
        r ? (r.ok ? `register ${fmt(r.volume_l, 4)} L` : `not read: ${r.reason}`) : "not read yet"),
      el("div", { class: "small" }, a ? (a.ok ? `aligned: ${a.markers_found.length} markers` +
        (a.rms_px !== null ? `, rms ${fmt(a.rms_px, 2)} px` : "") + (a.ncc !== undefined ? `, ncc ${fmt(a.ncc, 3)}` : "")
        : `alignment refused: ${a.refusal || a.message}`) : ""),
      el("div", { class: "small", "data-refused": refused.reduce((n, [, c]) => n + c, 0) },
        refused.length ? "refused: " + refused.map(([k, c]) => `${k} × ${c}`).join(", ") : "refused: none"),
      el("table", { class: "elements" },
        el("tr", {}, ...["element", "value", "confidence"].map((h) => el("th", {}, h))),
        ...(r ? r.elements : []).map((e) => el("tr", { class: e.readable ? "" : "bad" },
          el("td", {}, e.name), el("td", {}, e.value === null ? "—" : fmt(e.value, 2)),
          el("td", {}, e.confidence === null ? "—" : fmt(e.confidence, 3))))));
  }
}
let restDrawnAt = -1e9;
function restDue() {
  // whether a page redraws what is not a camera frame now: after any other event, else at most 4 times a second
  const now = performance.now();
  if (!live.changed && now - restDrawnAt < 250) return false;
  live.changed = false;
  restDrawnAt = now;
  return true;
}
function startLive(render) {
  let pending = false;
  const source = new EventSource("/events");
  source.onmessage = (msg) => {
    applyEvent(JSON.parse(msg.data));
    if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; render(live); }); }
  };
  source.onerror = () => { document.body.dataset.connection = "lost"; };
  source.onopen = () => { document.body.dataset.connection = "open"; };
}
