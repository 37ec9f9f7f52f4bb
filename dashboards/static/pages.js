/* Page controllers: each page reads the JSON API and draws with charts.js. All text goes in via textContent. */
(function () {
  "use strict";
  const body = document.body, page = body.dataset.page;
  async function api(url, init) {
    const r = await fetch(url, Object.assign({ credentials: "same-origin", headers: { Accept: "application/json" } }, init || {}));
    if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); throw new Error("sign in"); }
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    return r.json();
  }
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) { if (k === "class") e.className = attrs[k]; else e.setAttribute(k, attrs[k]); }
    kids.flat(Infinity).forEach(k => e.appendChild(typeof k === "string" || typeof k === "number" ? document.createTextNode(String(k)) : k));
    return e;
  }
  const fmt = (v, d) => window.KC.fmt(v, d);
  const enc = encodeURIComponent;
  function fail(where, err) { const n = document.getElementById(where); if (n) n.textContent = "Could not load: " + err.message; body.dataset.error = err.message; }
  function done() { body.dataset.ready = "1"; }
  const SIDES = { L: "Left", R: "Right" };
  function hours(hh) { const m = Math.round(hh * 60); return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`; }

  function flagBox(f) {
    const ev = Object.entries(f.evidence || {}).map(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v))]);
    return h("div", { class: "flag " + f.state, "data-flag": f.id },
      h("strong", {}, `${f.metric_label}: ${f.state}`), ` on ${f.day} (${f.kind})`,
      h("dl", {}, h("dt", {}, "baseline"), h("dd", {}, `${fmt(f.baseline, 3)} ${f.unit}`), h("dt", {}, "current"), h("dd", {}, `${fmt(f.current, 3)} ${f.unit}`),
        h("dt", {}, "real-change threshold"), h("dd", {}, `± ${fmt(f.threshold, 3)}`), h("dt", {}, "effect size"), h("dd", {}, fmt(f.effect_size, 2)),
        h("dt", {}, "days"), h("dd", {}, String(f.days_n)), ev));
  }

  /* each flag card's evidence chart: the trends API entry of the card's series (band, threshold, flagged span) */
  function evidenceCharts(metrics) {
    const byKey = {}; metrics.forEach(m => { byKey[m.key] = m; });
    document.querySelectorAll(".evidence-chart[data-series]").forEach(slot => {
      const m = byKey[slot.dataset.series]; slot.textContent = "";
      if (!m) { slot.appendChild(h("p", { class: "muted" }, "No weekly values of this series yet.")); return; }
      slot.appendChild(window.KC.trendChart(m));
      slot.appendChild(h("p", { class: "note" }, `${m.label}, weekly median (${m.unit}). Blue band: baseline; dashed red: real-change threshold; shaded weeks: flagged.`));
    });
  }

  async function therapistPatient() {
    const p = body.dataset.patient, base = "/api/patients/" + enc(p);
    const [facts, tr, fl, notes, sess] = await Promise.all([api(base), api(base + "/trends"), api(base + "/flags"), api(base + "/notes"), api(base + "/sessions?limit=20")]);
    document.getElementById("facts").textContent = `This week: ${hours(facts.wearing_h)} worn, ${facts.week.reduce((a, d) => a + d.steps, 0)} steps`;
    const box = document.getElementById("trends"); box.textContent = "";
    tr.metrics.forEach(m => {
      const last = (m.weekly || []).filter(w => w.value !== null).slice(-1)[0];
      const b = m.baseline;
      const note = b ? `baseline ${fmt(b.mean, m.decimals)} ± ${fmt(b.sd, m.decimals)} ${m.unit} (${window.KC.dayRange(b.start_day, b.end_day)}, ${b.source})` +
        (m.threshold !== null ? `; real change ± ${fmt(m.threshold, m.decimals)} ${m.unit}` : "") : "no baseline yet";
      box.appendChild(h("div", { class: "chart", "data-metric": m.key },
        h("h3", {}, `${m.label} `, h("span", { class: "latest muted" }, last ? `latest: ${fmt(last.value, m.decimals)} ${m.unit}, week of ${window.KC.day(last.week, true)}` : `(${m.unit})`)),
        window.KC.trendChart(m), h("div", { class: "note" }, note)));
    });
    evidenceCharts(tr.metrics);
    const flags = document.getElementById("flags"); flags.textContent = ""; flags.className = "";
    if (!fl.flags.length) flags.appendChild(h("p", { class: "muted" }, "No flags."));
    fl.flags.forEach(f => flags.appendChild(flagBox(f)));
    const tb = document.querySelector("#sessions tbody"); tb.textContent = "";
    sess.sessions.forEach(s => tb.appendChild(h("tr", {},
      h("td", {}, h("a", { href: "/therapist/sessions/" + enc(s.session_id) }, s.day)), h("td", { class: "num" }, s.duration_s === null ? "open" : (s.duration_s < 120 ? `${Math.round(s.duration_s)} s` : `${Math.round(s.duration_s / 60)} min`)),
      h("td", { class: "num" }, s.strides_n === null ? "–" : s.strides_n), h("td", { class: "num" }, s.walking_time_s === null ? "–" : `${Math.round(s.walking_time_s)} s`),
      h("td", { class: "num" }, fmt(s.cadence_steps_per_min, 1)), h("td", {}, s.state))));
    const ul = document.getElementById("note-list"); ul.textContent = "";
    notes.notes.forEach(n => ul.appendChild(h("li", {}, h("div", { class: "muted" }, `${new Date(n.time_us / 1000).toISOString().slice(0, 16).replace("T", " ")} · ${n.author}`), n.text)));
  }

  async function therapistSession() {
    const sid = body.dataset.session, base = "/api/sessions/" + enc(sid);
    const [s, pr] = await Promise.all([api(base), api(base + "/pressure")]);
    const sm = s.summary || {};
    document.getElementById("facts").textContent = `${s.day} · ${s.strides.length} strides · cadence ${fmt(sm.cadence_steps_per_min, 1)} steps/min · mean stride ${fmt(sm.mean_stride_length_m, 2)} m · walking ${fmt(sm.walking_time_s, 0)} s`;
    const feet = document.getElementById("feet"); feet.textContent = "";
    const vmax = Math.max(1e-9, ...Object.values(pr.feet).flatMap(f => f.grid.map(r => Math.max(...r))));
    const unit = (Object.values(pr.feet)[0] || {}).unit || "kPa";
    ["L", "R"].forEach(side => {
      const f = pr.feet[side];
      if (!f) { feet.appendChild(h("div", { class: "foot muted" }, `${SIDES[side]}: no data`)); return; }
      feet.appendChild(h("div", { class: "foot", "data-side": side }, h("div", {}, SIDES[side]),
        window.KC.footMap(f, side, pr.outline, { vmax: vmax }),
        h("div", { class: "muted" }, `${f.gait_line.strides_n} steps · max ${fmt(Math.max(...f.values.filter(v => v !== null)), 0)} ${f.unit}`)));
    });
    if (Object.keys(pr.feet).length) feet.appendChild(h("div", { class: "scale" }, window.KC.colourScale(vmax, unit, "Mean pressure while loaded")));
    strideTable(s);
  }

  /* the session's strides: catalogue labels and units in the header, values with the catalogue's decimals */
  function strideTable(s) {
    const thead = document.querySelector("#strides thead"), tb = document.querySelector("#strides tbody");
    thead.textContent = ""; tb.textContent = "";
    const info = s.stride_column_info;
    thead.appendChild(h("tr", {}, info.map(c => h("th", { scope: "col", "data-key": c.key }, c.label, c.unit ? h("span", { class: "unit" }, c.unit) : ""))));
    s.strides.forEach(r => tb.appendChild(h("tr", {}, r.map((v, i) => typeof v === "number" ? h("td", { class: "num" }, fmt(v, info[i].decimals))
      : h("td", {}, v === null ? "–" : (SIDES[v] || v))))));
  }

  /* one insole's status line: connected, battery, frames lost (InsoleStatus of the collector) */
  function insoleLine(side, st) {
    if (!st) return `${SIDES[side]} insole: no status yet`;
    const parts = [`${SIDES[side]} insole: ${st.connected ? "connected" : "not connected"}`];
    parts.push(st.battery_pct === null || st.battery_pct === undefined ? "battery unknown" : `battery ${Math.round(st.battery_pct)} %`);
    parts.push(st.loss_fraction === null || st.loss_fraction === undefined ? "packet loss not reported" : `${fmt(100 * st.loss_fraction, 1)} % of frames lost`);
    return parts.join(" · ");
  }

  function live() {
    const p = body.dataset.patient, state = document.getElementById("live-state"), feet = document.getElementById("feet");
    const insoles = document.getElementById("insoles");
    let frames = 0;
    const src = new EventSource("/api/patients/" + enc(p) + "/live/stream");
    src.addEventListener("frame", ev => {
      const d = JSON.parse(ev.data); frames += 1;
      const sides = Object.keys(d.feet);
      const c = d.status && d.status.collector;
      const hub = c ? (c.online ? "hub online" : "hub offline") + (c.storage_full ? " · hub storage full: recording to memory" : "") +
        (c.dropped_frames_n ? ` · ${c.dropped_frames_n} frames dropped by the hub since it started` : "") : "hub status unknown";
      state.textContent = sides.length ? `Receiving ${sides.map(s => SIDES[s].toLowerCase()).join(" + ")} · ${hub}` : `Waiting for data from the insoles · ${hub}`;
      insoles.textContent = "";
      ["L", "R"].forEach(side => insoles.appendChild(h("li", { "data-side": side }, insoleLine(side, (d.status || {})[side]))));
      body.dataset.frames = String(frames);
      feet.textContent = "";
      const vmax = Math.max(200, ...Object.values(d.feet).flatMap(f => f.grid.map(r => Math.max(...r))));
      ["L", "R"].forEach(side => { const f = d.feet[side]; if (f) feet.appendChild(h("div", { class: "foot", "data-side": side }, h("div", {}, SIDES[side]), window.KC.footMap(f, side, d.outline, { vmax: vmax, height: 320 }))); });
      if (sides.length) feet.appendChild(h("div", { class: "scale" }, window.KC.colourScale(vmax, d.feet[sides[0]].unit || "kPa", "Pressure now")));
      body.dataset.liveSides = sides.join("");
    });
    src.onerror = () => { state.textContent = "Connection lost; retrying…"; };
    window.addEventListener("beforeunload", () => src.close());
  }

  async function me() {
    const d = await api("/api/me/overview");
    const s = document.getElementById("status"); s.textContent = d.status.headline; s.className = "big status-" + d.status.level;
    document.getElementById("battery").textContent = d.status.battery_note || "";
    document.getElementById("week-total").textContent = `${d.steps.toLocaleString("en-GB")} steps, about ${Math.round(d.walking_min)} minutes of walking in the last seven days.`;
    const c = document.getElementById("week-chart"); c.textContent = ""; c.appendChild(window.KC.barChart(d.week, "steps", "Steps per day", "steps", { width: Math.max(280, Math.min(560, c.clientWidth || 460)) }));
    const ul = document.getElementById("trend"); ul.textContent = ""; d.trend.forEach(t => ul.appendChild(h("li", {}, t)));
  }

  async function research() {
    const sel = document.getElementById("cohort");
    const c = await api("/api/research/cohorts");
    c.cohorts.forEach(x => sel.appendChild(h("option", { value: x }, x)));
    async function load() {
      const q = new URLSearchParams();
      ["cohort", "from_day", "to_day"].forEach(k => { const v = document.getElementById(k).value; if (v) q.set(k, v); });
      const d = await api("/api/research/sessions?" + q.toString());
      document.getElementById("count").textContent = `${d.sessions.length} sessions`;
      const tb = document.querySelector("#research-sessions tbody"); tb.textContent = "";
      d.sessions.forEach(s => tb.appendChild(h("tr", { "data-session": s.session },
        h("td", { class: "mono" }, s.session), h("td", { class: "mono" }, s.subject), h("td", {}, s.cohort), h("td", {}, s.day),
        h("td", { class: "num" }, s.duration_s === null ? "–" : `${Math.round(s.duration_s)} s`), h("td", { class: "num" }, s.strides_n === null ? "–" : s.strides_n),
        h("td", {}, h("a", { href: `/api/research/sessions/${enc(s.session)}/strides.csv`, class: "dl-csv", download: "" }, "strides CSV"), " · ",
          h("a", { href: `/api/research/sessions/${enc(s.session)}/export.zip?format=parquet`, class: "dl-parquet", download: "" }, "Parquet"), " · ",
          h("a", { href: `/api/research/sessions/${enc(s.session)}/export.zip?format=csv`, class: "dl-csvzip", download: "" }, "CSV"), " · ",
          h("a", { href: `/api/research/sessions/${enc(s.session)}/export.zip?format=bids`, class: "dl-bids", download: "" }, "BIDS")))));
      done();
    }
    document.getElementById("filter").addEventListener("submit", ev => { ev.preventDefault(); body.dataset.ready = ""; load().catch(e => fail("count", e)); });
    await load();
  }

  async function admin() {
    const d = await api("/api/admin/accounts");
    const tb = document.querySelector("#accounts tbody");
    d.accounts.forEach(a => tb.appendChild(h("tr", {}, h("td", {}, a.username), h("td", {}, a.role), h("td", {}, a.display_name || ""), h("td", {}, a.patient || ""), h("td", {}, a.disabled ? "yes" : ""))));
    const tb2 = document.querySelector("#assignments tbody");
    d.assignments.forEach(a => tb2.appendChild(h("tr", {}, h("td", {}, a.therapist), h("td", {}, a.patient))));
  }

  const PAGES = { "therapist-patient": therapistPatient, "therapist-session": therapistSession, me: me, admin: admin };
  document.addEventListener("DOMContentLoaded", () => {
    if (page === "live") { live(); done(); return; }
    if (page === "research") { research().catch(e => fail("count", e)); return; }
    const f = PAGES[page];
    if (f) f().then(done, e => { fail(page === "me" ? "status" : "facts", e); done(); }); else done();
  });
})();
