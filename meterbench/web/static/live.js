// meterbench live view: one EventSource on /events, a state object kept from its events, and a
// render(state) the page defines. No library, nothing fetched from elsewhere (docs/live-view.md).
"use strict";
const live = {
  session: null, phase: "connecting", verdict: null, instruments: [], points: [], current_point: null,
  verdicts: {}, reading: null, telemetry: null, warnings: [], events: 0, lastPoint: {},
};
function verdictKey(v) { return v.instrument + "\u0000" + v.point; }
function applyEvent(ev) {
  live.events += 1;
  if (ev.type === "state") {
    for (const [k, v] of Object.entries(ev)) {
      if (k === "verdicts") { for (const x of v) live.verdicts[verdictKey(x)] = x; }
      else if (k !== "type") live[k] = v;
    }
  } else if (ev.type === "verdict") {
    live.verdicts[verdictKey(ev)] = ev;
  } else if (ev.type === "reading") {
    live.reading = ev;
  } else if (ev.type === "telemetry") {
    live.telemetry = ev;
  } else if (ev.type === "point") {
    live.lastPoint = ev;
  } else if (ev.type === "warning") {
    live.warnings.push(ev);
  }
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
