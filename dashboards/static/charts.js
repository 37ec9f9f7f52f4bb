/* Kinetic Chain charts: small hand-written SVG drawing, no library (offline machines, CSP 'self').
   KC.trendChart(metric)  weekly trend with baseline band, real-change threshold, daily points, flagged weeks
   KC.footMap(foot, side, outline, opts)  heat map on the insole outline + COP gait lines / live trail
   KC.barChart(rows, key, label, unit)  simple bars (patient's week)
   KC.colourScale(vmax, unit, label)  the colour scale of the heat maps (0 .. vmax, in the data's unit)
   Axes: ticks at round steps printed with as many decimals as the step needs (never two alike), the unit
   on every axis, dates as "16 Nov" with the year on the first date and wherever the year changes. */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function text(parent, x, y, s, attrs) { const t = el("text", Object.assign({ x: x, y: y }, attrs || {}), parent); t.textContent = s; return t; }
  function fmt(v, d) { return v === null || v === undefined ? "–" : Number(v).toFixed(d === undefined ? 2 : d); }
  /* round ticks between lo and hi (about n of them) and the decimals that print each one differently */
  function niceTicks(lo, hi, n) {
    const span = hi - lo || Math.abs(hi) || 1, step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
    /* the roundest step near span / n that still leaves at least 3 ticks inside [lo, hi] */
    const steps = [0.5, 1, 2, 2.5, 5, 10].map(m => m * mag);
    let i = steps.findIndex(s => s >= step0); if (i < 0) i = steps.length - 1;
    const inside = s => Math.floor(hi / s + 1e-9) - Math.ceil(lo / s - 1e-9) + 1;
    while (i > 0 && inside(steps[i]) < 3) i--;
    const step = steps[i];
    const out = []; for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + 1e-9 * span; k++) out.push(+(k * step).toFixed(10));
    let decimals = 0;
    while (decimals < 10 && Math.abs(Math.round(step * Math.pow(10, decimals)) - step * Math.pow(10, decimals)) > 1e-6) decimals++;
    out.decimals = decimals;
    return out;
  }
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  /* "2026-11-16" -> "16 Nov" or "16 Nov 2026" */
  function day(iso, withYear) { const p = String(iso).split("-"); return `${+p[2]} ${MONTHS[+p[1] - 1]}` + (withYear ? ` ${p[0]}` : ""); }
  /* "10 Oct – 23 Oct 2026" (both years when they differ) */
  function dayRange(a, b) { return a.slice(0, 4) === b.slice(0, 4) ? `${day(a)} – ${day(b, true)}` : `${day(a, true)} – ${day(b, true)}`; }
  /* which of n dated positions get a label (at most max; always the latest) and their text (year where it changes) */
  function dateLabels(dates, max) {
    const n = dates.length, every = Math.max(1, Math.ceil(n / max)), pick = [];
    for (let i = n - 1; i >= 0; i -= every) pick.unshift(i);
    let year = null;
    return pick.map(i => { const y = dates[i].slice(0, 4), t = day(dates[i], y !== year); year = y; return [i, t]; });
  }

  function trendChart(m, opts) {
    opts = opts || {};
    const W = opts.width || 380, H = opts.height || 196, L = 48, R = 14, T = 22, B = 38;
    const svg = el("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "trend", "data-metric": m.key, role: "img" });
    el("title", {}, svg).textContent = `${m.label} (${m.unit}), weekly median`;
    const weeks = (m.weekly || []).map(w => w.week);
    const wv = (m.weekly || []).filter(w => w.value !== null);
    const vals = wv.map(w => w.value).concat((m.daily || []).map(d => d.value));
    const b = m.baseline;
    if (b) { vals.push(b.mean - b.sd, b.mean + b.sd); if (m.threshold !== null) vals.push(b.mean - m.threshold, b.mean + m.threshold); }
    if (!weeks.length || !vals.length) { text(svg, W / 2, H / 2, "no data yet", { "text-anchor": "middle" }); svg.setAttribute("data-points", "0"); return svg; }
    let lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.05 || 1; lo -= pad; hi += pad;
    const n = weeks.length, wIndex = {}; weeks.forEach((w, i) => wIndex[w] = i);
    const x = i => L + (n === 1 ? (W - L - R) / 2 : i * (W - L - R) / (n - 1));
    const y = v => T + (hi - v) * (H - T - B) / (hi - lo);
    const dayX = d => { // a day sits inside its week
      const dt = new Date(d + "T00:00:00Z"), wd = (dt.getUTCDay() + 6) % 7;
      const ws = new Date(dt.getTime() - wd * 864e5).toISOString().slice(0, 10);
      const i = wIndex[ws]; if (i === undefined) return null;
      const step = n === 1 ? 40 : (W - L - R) / (n - 1); return x(i) + (wd - 3) * step / 8;
    };
    // flagged weeks
    const flagged = new Set((m.flag_days || []).map(d => { const dt = new Date(d + "T00:00:00Z"), wd = (dt.getUTCDay() + 6) % 7; return new Date(dt.getTime() - wd * 864e5).toISOString().slice(0, 10); }));
    const colW = n === 1 ? 40 : (W - L - R) / (n - 1);
    flagged.forEach(w => { if (wIndex[w] !== undefined) el("rect", { x: x(wIndex[w]) - colW / 2, y: T, width: colW, height: H - T - B, fill: "#fde2e1", class: "flag-week" }, svg); });
    // axes and grid
    const ticks = niceTicks(lo, hi, 4);
    ticks.forEach(v => {
      el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#eef1f5" }, svg);
      text(svg, L - 4, y(v) + 4, fmt(v, ticks.decimals), { "text-anchor": "end", class: "tick tick-y" });
    });
    text(svg, 4, 12, m.unit, { class: "axis-title axis-y" });
    dateLabels(weeks, 5).forEach(([i, t]) => text(svg, x(i), H - 21, t, { "text-anchor": i === n - 1 && n > 1 ? "end" : "middle", class: "tick tick-x" }));
    text(svg, W - R, H - 5, "week starting (Monday)", { "text-anchor": "end", class: "axis-title axis-x" });
    // baseline band and thresholds
    if (b) {
      el("rect", { x: L, width: W - L - R, y: y(b.mean + b.sd), height: Math.max(1, y(b.mean - b.sd) - y(b.mean + b.sd)), fill: "#cfe3ff", class: "baseline-band" }, svg);
      el("line", { x1: L, x2: W - R, y1: y(b.mean), y2: y(b.mean), stroke: "#7aa7e8", "stroke-width": 1, class: "baseline-mean" }, svg);
      if (m.threshold !== null && m.threshold !== undefined) [b.mean - m.threshold, b.mean + m.threshold].forEach(v =>
        el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#d9534f", "stroke-dasharray": "5 4", "stroke-width": 1.3, class: "threshold" }, svg));
    }
    // daily points
    (m.daily || []).forEach(d => { const dx = dayX(d.day); if (dx !== null) el("circle", { cx: dx, cy: y(d.value), r: 1.8, fill: "#9aa5b1", class: "pt-day" }, svg); });
    // weekly line
    const pts = (m.weekly || []).filter(w => w.value !== null).map(w => `${x(wIndex[w.week]).toFixed(1)},${y(w.value).toFixed(1)}`);
    if (pts.length > 1) el("polyline", { points: pts.join(" "), fill: "none", stroke: "#175cd3", "stroke-width": 2, class: "weekly-line" }, svg);
    (m.weekly || []).forEach(w => { if (w.value !== null) { const c = el("circle", { cx: x(wIndex[w.week]), cy: y(w.value), r: 3.2, fill: "#175cd3", class: "pt-week" }, svg); el("title", {}, c).textContent = `week of ${day(w.week, true)}: ${fmt(w.value, m.decimals)} ${m.unit} (${w.days_n} days)`; } });
    svg.setAttribute("data-points", String(pts.length));
    return svg;
  }

  // heat colours: white -> yellow -> orange -> red -> dark red
  const STOPS = [[0, [255, 255, 255]], [0.15, [255, 247, 188]], [0.4, [254, 196, 79]], [0.65, [236, 112, 20]], [0.85, [204, 40, 30]], [1, [103, 0, 13]]];
  function heat(u) {
    u = Math.max(0, Math.min(1, u || 0));
    for (let i = 1; i < STOPS.length; i++) if (u <= STOPS[i][0]) {
      const a = STOPS[i - 1], b = STOPS[i], f = (u - a[0]) / (b[0] - a[0]);
      return `rgb(${a[1].map((c, k) => Math.round(c + f * (b[1][k] - c))).join(",")})`;
    }
    return "rgb(103,0,13)";
  }
  let clipN = 0;
  /* foot: {grid, sensors, values, gait_line?, trail?}; side "L" mirrored so lateral is outward (seen from above) */
  function footMap(foot, side, outline, opts) {
    opts = opts || {};
    const Hf = opts.height || 360, Wf = Hf / 2.6, pad = 12, W = Wf + 2 * pad, H = Hf + 2 * pad;
    const mir = side === "L" ? -1 : 1;
    const X = ml => pad + Wf / 2 + mir * ml * Wf, Y = ap => pad + (1 - ap) * Hf;
    const svg = el("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "footmap", "data-side": side, role: "img" });
    el("title", {}, svg).textContent = `${side === "L" ? "Left" : "Right"} foot pressure`;
    const id = `kc-clip-${++clipN}`;
    const path = "M" + outline.map(p => `${X(p[1]).toFixed(1)},${Y(p[0]).toFixed(1)}`).join("L") + "Z";
    el("path", { d: path }, el("clipPath", { id: id }, el("defs", {}, svg)));
    const g = el("g", { "clip-path": `url(#${id})`, class: "heat" }, svg);
    const grid = foot.grid || [], apN = grid.length, mlN = apN ? grid[0].length : 0;
    const vmax = opts.vmax || Math.max(1e-9, ...grid.map(r => Math.max(...r)));
    el("rect", { x: 0, y: 0, width: W, height: H, fill: "#fff" }, g);
    for (let i = 0; i < apN; i++) for (let j = 0; j < mlN; j++) {
      const ap0 = i / apN, ml0 = j / mlN - 0.5, x0 = X(ml0), x1 = X(ml0 + 1 / mlN);
      el("rect", { x: Math.min(x0, x1).toFixed(1), y: Y(ap0 + 1 / apN).toFixed(1), width: (Math.abs(x1 - x0) + 0.6).toFixed(1), height: (Hf / apN + 0.6).toFixed(1), fill: heat(grid[i][j] / vmax), class: "cell" }, g);
    }
    el("path", { d: path, fill: "none", stroke: "#333", "stroke-width": 1.5, class: "outline" }, svg);
    (foot.sensors || []).forEach((s, k) => { const c = el("circle", { cx: X(s[1]), cy: Y(s[0]), r: 2.2, fill: "#222", "fill-opacity": 0.55, class: "sensor" }, svg); el("title", {}, c).textContent = `${fmt((foot.values || [])[k], 0)} ${foot.unit || "kPa"}`; });
    const line = (pts, attrs) => pts.length > 1 && el("polyline", Object.assign({ points: pts.map(p => `${X(p[1]).toFixed(1)},${Y(p[0]).toFixed(1)}`).join(" "), fill: "none" }, attrs), svg);
    const gl = foot.gait_line;
    if (gl) {
      (gl.examples || []).forEach(p => line(p, { stroke: "#555", "stroke-width": 0.8, "stroke-opacity": 0.7, class: "gait-example" }));
      line(gl.typical || [], { stroke: "#111", "stroke-width": 3, class: "gait-typical" });
    }
    if (foot.trail && foot.trail.length) {
      line(foot.trail, { stroke: "#1f6feb", "stroke-width": 2, class: "cop-trail" });
      const last = foot.trail[foot.trail.length - 1];
      el("circle", { cx: X(last[1]), cy: Y(last[0]), r: 5, fill: "#1f6feb", class: "cop-now" }, svg);
    }
    return svg;
  }

  function barChart(rows, key, label, unit, opts) {
    opts = opts || {};
    const W = opts.width || 460, H = opts.height || 196, L = 14, R = 10, B = 38, T = 34;  // T: room for the unit above the tallest bar's label
    const svg = el("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "bars", role: "img" });
    el("title", {}, svg).textContent = label;
    const vmax = Math.max(1, ...rows.map(r => r[key]));
    const bw = (W - L - R) / rows.length;
    text(svg, 4, 12, unit, { class: "axis-title axis-y" });
    rows.forEach((r, i) => {
      const h = (H - T - B) * r[key] / vmax, x0 = L + i * bw + bw * 0.15;
      const bar = el("rect", { x: x0, y: H - B - h, width: bw * 0.7, height: Math.max(h, 0.5), fill: "#175cd3", rx: 3, class: "bar" }, svg);
      el("title", {}, bar).textContent = `${day(r.day, true)}: ${r[key]} ${unit}`;
      const d = new Date(r.day + "T00:00:00Z"), wd = d.toLocaleDateString("en-GB", { weekday: "short", timeZone: "UTC" });
      text(svg, x0 + bw * 0.35, H - 21, `${wd} ${d.getUTCDate()}`, { "text-anchor": "middle", class: "tick tick-x" });
      if (r[key]) text(svg, x0 + bw * 0.35, H - B - h - 3, String(r[key]), { "text-anchor": "middle" });
    });
    if (rows.length) text(svg, W - R, H - 5, `day, ${dayRange(rows[0].day, rows[rows.length - 1].day)}`, { "text-anchor": "end", class: "axis-title axis-x" });
    return svg;
  }

  /* the heat maps' colour scale: a bar from 0 to vmax with round ticks in the data's unit */
  function colourScale(vmax, unit, label, opts) {
    opts = opts || {};
    const W = opts.width || 320, H = 52, L = 10, R = 18, T = 18, bar = 12;
    const svg = el("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "colour-scale", role: "img", "data-vmax": String(vmax), "data-unit": unit });
    el("title", {}, svg).textContent = `${label} (${unit}): colour scale from 0 to ${fmt(vmax, 0)} ${unit}`;
    const id = `kc-scale-${++clipN}`, grad = el("linearGradient", { id: id }, el("defs", {}, svg));
    STOPS.forEach(s => el("stop", { offset: String(s[0]), "stop-color": `rgb(${s[1].join(",")})` }, grad));
    text(svg, L, 11, `${label} (${unit})`, { class: "axis-title" });
    el("rect", { x: L, y: T, width: W - L - R, height: bar, fill: `url(#${id})`, stroke: "#566170", "stroke-width": 0.6 }, svg);
    const ticks = niceTicks(0, vmax, 4);
    ticks.forEach(v => {
      const x = L + (W - L - R) * v / vmax;
      el("line", { x1: x, x2: x, y1: T + bar, y2: T + bar + 4, stroke: "#566170" }, svg);
      text(svg, x, H - 6, fmt(v, ticks.decimals), { "text-anchor": "middle", class: "tick" });
    });
    return svg;
  }
  window.KC = { el: el, fmt: fmt, day: day, dayRange: dayRange, heat: heat, trendChart: trendChart, footMap: footMap, barChart: barChart, colourScale: colourScale };
})();
