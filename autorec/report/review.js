// autorec review bar (night report and web night page): filter by rule, near-misses, alerts and time, all in
// the URL; j/k/arrows and Enter; hover previews; one review item per run of close segments of one rule.
// Served by autorec (the page's JSON island says "server"): "reviewed" marks, range exports, electrode search.
// DOM is built with textContent only: nothing from the directory is ever parsed as HTML here.
"use strict";
(function () {
  const island = document.getElementById("review-data");
  const bar = document.getElementById("review-bar");
  if (!island || !bar) return;
  const data = JSON.parse(island.textContent);
  const server = !!data.server;
  const params = new URLSearchParams(location.search);
  const state = {
    rule: params.get("rule") || "",
    show: params.get("show") || "",
    from: params.get("from") || "",
    to: params.get("to") || "",
    unreviewed: params.get("unreviewed") === "1",
    current: null,
    reviewed: {},
    expanded: new Set(),
  };

  // -- small helpers -------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  const pad = (n, w) => String(n).padStart(w || 2, "0");
  function clock(t) { // local HH:MM:SS.t
    const d = new Date(t * 1000);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + Math.floor(d.getMilliseconds() / 100);
  }
  const iso = (t) => new Date(t * 1000).toISOString();
  // A time as a person types it: ISO (with or without zone: local), a time of day on the night's date, epoch.
  function parseWhen(text) {
    text = (text || "").trim();
    if (!text) return null;
    if (/^\d+(\.\d+)?$/.test(text) && text.length > 8) return Number(text);
    const m = /^(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?$/.exec(text);
    if (m && data.span) {
      const d = new Date(data.span[0] * 1000);
      d.setHours(Number(m[1]), Number(m[2]), 0, 0);
      let t = d.getTime() / 1000 + (m[3] ? Number(m[3]) : 0);
      if (t < data.span[0] - 60) t += 86400; // after midnight: the next day of the night
      return t;
    }
    const ms = Date.parse(text.replace(" ", "T"));
    return Number.isFinite(ms) ? ms / 1000 : NaN;
  }
  const cards = () => Array.from(document.querySelectorAll(".card[data-name]"));
  const info = (c) => ({
    name: c.dataset.name, start: Number(c.dataset.start), end: Number(c.dataset.end),
    rules: JSON.parse(c.dataset.rules || "[]"), tags: (c.dataset.tags || "").split(" ").filter(Boolean),
  });

  // -- the bar -------------------------------------------------------------------------------------
  const ruleSel = el("select", { id: "review-rule", "aria-label": "show" });
  const fromBox = el("input", { id: "review-from", type: "text", placeholder: "from (e.g. 02:10 or ISO)", value: state.from });
  const toBox = el("input", { id: "review-to", type: "text", placeholder: "to", value: state.to });
  const unrev = el("input", { id: "review-unreviewed", type: "checkbox" });
  unrev.checked = state.unreviewed;
  const count = el("span", { id: "review-count", class: "meta" });
  const clearBtn = el("button", { type: "button", id: "review-clear", text: "show all" });
  bar.append(
    el("label", { text: "show " }, ruleSel),
    el("label", { text: "from " }, fromBox),
    el("label", { text: "to " }, toBox),
  );
  if (server) bar.append(el("label", {}, unrev, " unreviewed only"));
  const markAll = el("button", { type: "button", id: "review-mark-shown", text: "mark shown reviewed" });
  markAll.addEventListener("click", () => setReviewed(cards().filter((c) => !c.classList.contains("hidden")), true));
  if (server) bar.append(markAll);
  bar.append(clearBtn, count, el("span", { class: "meta", text: "keys: j/k or ↓/↑ move · Enter opens" + (server ? " · r marks reviewed" : "") }));
  const moments = el("div", { id: "review-moments", class: "moments" });
  bar.after(moments);

  function fillRules() {
    const rules = new Set();
    cards().forEach((c) => info(c).rules.forEach((r) => rules.add(r)));
    const want = state.show ? "show:" + state.show : state.rule ? "rule:" + state.rule : "";
    ruleSel.textContent = "";
    ruleSel.append(el("option", { value: "", text: "every segment" }));
    for (const r of rules) ruleSel.append(el("option", { value: "rule:" + r, text: "rule " + r }));
    if (state.rule && !rules.has(state.rule)) ruleSel.append(el("option", { value: "rule:" + state.rule, text: "rule " + state.rule }));
    ruleSel.append(el("option", { value: "show:near-misses", text: "near-misses (" + (data.near_miss_count !== undefined ? data.near_miss_count : data.near_misses.length) + ")" }));
    ruleSel.append(el("option", { value: "show:alerts", text: "alerts (" + data.alerts.length + ")" }));
    ruleSel.value = want;
  }

  function readBar() {
    const v = ruleSel.value;
    state.rule = v.startsWith("rule:") ? v.slice(5) : "";
    state.show = v.startsWith("show:") ? v.slice(5) : "";
    state.from = fromBox.value.trim();
    state.to = toBox.value.trim();
    state.unreviewed = unrev.checked;
  }

  function writeUrl() {
    const p = new URLSearchParams(location.search);
    p.delete("token"); // the cookie carries it from here on: never leave it in a link that gets shared
    for (const [k, v] of [["rule", state.rule], ["show", state.show], ["from", state.from], ["to", state.to], ["unreviewed", state.unreviewed ? "1" : ""]]) {
      if (v) p.set(k, v); else p.delete(k);
    }
    const q = p.toString();
    history.replaceState(null, "", location.pathname + (q ? "?" + q : "") + location.hash);
  }

  // -- filtering, grouping -------------------------------------------------------------------------
  function span() {
    const lo = parseWhen(state.from), hi = parseWhen(state.to);
    fromBox.classList.toggle("bad", Number.isNaN(lo));
    toBox.classList.toggle("bad", Number.isNaN(hi));
    return [Number.isFinite(lo) ? lo : null, Number.isFinite(hi) ? hi : null];
  }

  function apply() {
    const [lo, hi] = span();
    const all = cards();
    let shown = 0;
    const visible = [];
    for (const c of all) {
      const s = info(c);
      let ok = true;
      if (state.rule && !s.rules.includes(state.rule)) ok = false;
      if (state.show === "near-misses" && !s.tags.includes("near-miss")) ok = false;
      if (state.show === "alerts" && !s.tags.includes("alert")) ok = false;
      if (lo !== null && s.end < lo) ok = false;
      if (hi !== null && s.start > hi) ok = false;
      const done = Object.prototype.hasOwnProperty.call(state.reviewed, s.name);
      c.classList.toggle("reviewed", done);
      if (state.unreviewed && done) ok = false;
      c.classList.toggle("hidden", !ok);
      if (ok) { shown++; visible.push(c); }
    }
    group(visible);
    count.textContent = shown + " of " + all.length + " segments";
    if (state.current && (state.current.classList.contains("hidden") || state.current.classList.contains("folded"))) select(null);
    showMoments(lo, hi);
    zoom(lo, hi);
    markButtons();
  }

  // Consecutive segments of one rule less than its post-roll apart are one review item: the first card
  // stands for them ("+N more"), the others fold under it until it is expanded.
  function group(visible) {
    let head = null, members = [], prevEnd = null, rule = null;
    const close = () => {
      if (!head) return;
      const open = state.expanded.has(head.dataset.name);
      members.forEach((m) => m.classList.toggle("folded", !open));
      head._members = members;
      let btn = head.querySelector(".group-toggle");
      if (members.length) {
        if (!btn) {
          btn = el("button", { type: "button", class: "group-toggle" });
          btn.addEventListener("click", (e) => {
            const n = e.currentTarget.closest(".card").dataset.name;
            if (state.expanded.has(n)) state.expanded.delete(n); else state.expanded.add(n);
            apply();
          });
          head.querySelector("h3").append(btn);
        }
        btn.textContent = open ? "fold the " + members.length + " others" : "+" + members.length + " more of " + rule;
        head.dataset.count = String(members.length + 1);
      } else if (btn) { btn.remove(); delete head.dataset.count; }
    };
    cards().forEach((c) => { if (!visible.includes(c)) c.classList.remove("folded"); });
    for (const c of visible) {
      const s = info(c);
      const r = s.rules[0] || "";
      const gap = (data.post_roll && data.post_roll[r]) || 20;
      if (head && r === rule && prevEnd !== null && s.start - prevEnd < gap) {
        members.push(c);
      } else {
        close();
        head = c; members = []; rule = r;
        c.classList.remove("folded");
      }
      prevEnd = s.end;
    }
    close();
  }

  function coveringCard(t) {
    return cards().find((c) => Number(c.dataset.start) <= t && t <= Number(c.dataset.end));
  }
  function momentLink(t) {
    const c = coveringCard(t);
    if (c && server) return "/segment/" + encodeURIComponent(c.dataset.name) + "?t=" + iso(t);
    if (c) return "#" + c.id;
    return server ? "/api/timelapse?t=" + iso(t) : null;
  }
  function momentItem(t, text) {
    const href = momentLink(t);
    const li = el("li");
    li.append(href ? el("a", { href: href, class: "at", text: clock(t) }) : el("span", { text: clock(t) }), " " + text);
    if (!coveringCard(t)) li.append(el("span", { class: "meta", text: server ? " (no segment: nearest timelapse frame)" : " (no segment)" }));
    return li;
  }
  function showMoments(lo, hi) {
    moments.textContent = "";
    const inside = (a, b) => (lo === null || b >= lo) && (hi === null || a <= hi);
    let items = [];
    if (state.show === "near-misses") {
      items = data.near_misses.filter((n) => inside(n.start, n.end)).map((n) =>
        momentItem(n.start, n.rule + ": peak " + Number(n.peak).toPrecision(4) + " against threshold " + Number(n.threshold).toPrecision(4)));
    } else if (state.show === "alerts") {
      items = data.alerts.filter((a) => inside(a.raised, a.cleared === null ? Infinity : a.cleared)).map((a) =>
        momentItem(a.raised, a.message + (a.cleared === null ? " (not cleared)" : " (cleared " + clock(a.cleared) + ")")));
    } else return;
    const listed = state.show === "near-misses" && data.near_miss_count > data.near_misses.length ? " (the first " + data.near_misses.length + " of the night's " + data.near_miss_count + " are listed)" : "";
    moments.append(el("h3", { text: items.length + " " + state.show + (items.length > 200 ? " (first 200 shown)" : "") + listed }));
    const ul = el("ul");
    items.slice(0, 200).forEach((li) => ul.append(li));
    moments.append(ul);
  }

  // Zoom every plot sharing the timeline's time axis to the chosen span (Bokeh may still be building it).
  function zoom(lo, hi, tries) {
    if ((lo === null && hi === null) || (!data.span && (lo === null || hi === null))) return;
    const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
    const tl = doc && doc.get_model_by_name("timeline");
    if (!tl) {
      if ((tries || 0) < 100) setTimeout(() => zoom(lo, hi, (tries || 0) + 1), 100);
      return;
    }
    const a = lo !== null ? lo : data.span[0], b = hi !== null ? hi : data.span[1];
    const padS = Math.max(1, (b - a) * 0.02);
    tl.x_range.start = (a - padS) * 1000;
    tl.x_range.end = (b + padS) * 1000;
    document.body.dataset.zoomed = a + "," + b;
  }

  // -- keyboard ------------------------------------------------------------------------------------
  const shownCards = () => cards().filter((c) => !c.classList.contains("hidden") && !c.classList.contains("folded"));
  function select(c) {
    if (state.current) state.current.classList.remove("current");
    state.current = c;
    if (!c) return;
    c.classList.add("current");
    const focused = document.activeElement;
    if (focused && (focused.tagName === "BUTTON" || focused.tagName === "A")) focused.blur(); // Enter opens the card now
    c.scrollIntoView({ block: "center", behavior: "instant" });
  }
  function openCard(c) {
    const href = c.dataset.open || (c.querySelector(".meta a[href]") || {}).href;
    if (href) location.href = href;
  }
  document.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const tag = (e.target && e.target.tagName) || "";
    if (["INPUT", "SELECT", "TEXTAREA"].includes(tag)) return;
    if ((tag === "BUTTON" || tag === "A") && (e.key === "Enter" || e.key === " ")) return; // the focused control's own
    const list = shownCards();
    if (!list.length) return;
    const i = state.current ? list.indexOf(state.current) : -1;
    if (e.key === "j" || e.key === "ArrowDown") { select(list[Math.min(list.length - 1, i + 1)]); e.preventDefault(); }
    else if (e.key === "k" || e.key === "ArrowUp") { select(list[Math.max(0, i - 1)]); e.preventDefault(); }
    else if (e.key === "Enter" && state.current) { openCard(state.current); e.preventDefault(); }
    else if (e.key === "r" && server && state.current) { toggleReviewed(state.current); e.preventDefault(); }
  });

  // -- hover preview: the card's frames in turn ----------------------------------------------------
  document.addEventListener("mouseover", (e) => {
    const card = e.target.closest && e.target.closest(".card[data-name]");
    if (!card || card.dataset.previewing) return;
    const imgs = Array.from(card.querySelectorAll(".strip img"));
    if (imgs.length < 2) return;
    card.dataset.previewing = "1";
    const first = imgs[0];
    const original = first.src;
    let k = 0;
    first.classList.add("previewing");
    const timer = setInterval(() => { k = (k + 1) % imgs.length; first.src = k ? imgs[k].src : original; }, 450);
    card.addEventListener("mouseleave", function stop() {
      clearInterval(timer);
      first.src = original;
      first.classList.remove("previewing");
      delete card.dataset.previewing;
      card.removeEventListener("mouseleave", stop);
    });
  });

  // -- reviewed marks (server) ---------------------------------------------------------------------
  function markButtons() {
    if (!server) return;
    for (const c of cards()) {
      let b = c.querySelector(".review-mark");
      if (!b) {
        b = el("button", { type: "button", class: "review-mark" });
        b.addEventListener("click", () => toggleReviewed(c));
        c.querySelector("h3").append(" ", b);
      }
      const done = Object.prototype.hasOwnProperty.call(state.reviewed, c.dataset.name);
      b.textContent = done ? "reviewed ✓ (undo)" : "mark reviewed";
    }
  }
  function loadReviewed() {
    return fetch("/api/reviewed").then((r) => r.json()).then((d) => { state.reviewed = d.reviewed || {}; apply(); }).catch(() => {});
  }
  const isReviewed = (name) => Object.prototype.hasOwnProperty.call(state.reviewed, name);
  // Store marks one after the other (the server appends a line each); `want`: reviewed or not.
  function setReviewed(list, want) {
    const names = list.map((c) => c.dataset.name).filter((n) => isReviewed(n) !== want);
    let chain = Promise.resolve();
    for (const name of names) {
      chain = chain.then(() => fetch("/api/reviewed", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name: name, reviewed: want }) })
        .then((r) => { if (!r.ok) throw new Error(r.status); if (want) state.reviewed[name] = Date.now() / 1000; else delete state.reviewed[name]; }));
    }
    return chain.then(apply).catch((err) => { apply(); count.textContent = "could not store the mark (" + err.message + ")"; });
  }
  // A folded review item is marked as a whole: its first card and the ones folded under it.
  function toggleReviewed(c) {
    const folded = c._members && !state.expanded.has(c.dataset.name) ? c._members : [];
    return setReviewed([c, ...folded], !isReviewed(c.dataset.name));
  }

  // -- range export (server) -----------------------------------------------------------------------
  const exportBox = el("div", { id: "review-export", class: "meta" });
  function visibleSpan() {
    const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
    const tl = doc && doc.get_model_by_name("timeline");
    return tl ? [tl.x_range.start / 1000, tl.x_range.end / 1000] : null;
  }
  function exportUi() {
    const btn = el("button", { type: "button", id: "export-start", text: "export this span" });
    const status = el("span", { id: "export-status" });
    const files = el("span", { id: "export-files" });
    const spanNote = el("span", { id: "export-span" });
    exportBox.append(btn, " ", spanNote, " ", el("span", { text: "(from/to above, else the timeline as zoomed: drag its box-zoom over the span; at most 30 min) " }), status, " ", files);
    bar.append(exportBox);
    function exportSpan() {
      let [lo, hi] = span();
      if (lo === null || hi === null) {
        const v = visibleSpan();
        if (v) { lo = lo === null ? v[0] : lo; hi = hi === null ? v[1] : hi; }
      }
      return [lo, hi];
    }
    function note() { // what the button would export, kept up to date as the timeline is zoomed
      const [lo, hi] = exportSpan();
      if (lo === null || hi === null) { spanNote.textContent = ""; return; }
      const len = hi - lo;
      spanNote.textContent = clock(lo) + " to " + clock(hi) + " (" + (len < 120 ? len.toFixed(1) + " s" : (len / 60).toFixed(1) + " min") + ")";
      spanNote.classList.toggle("bad", len > 1800 || len <= 0);
    }
    setInterval(note, 500);
    btn.addEventListener("click", () => {
      readBar();
      const [lo, hi] = exportSpan();
      if (lo === null || hi === null) { status.textContent = "give from and to"; return; }
      fetch("/api/export?from=" + encodeURIComponent(iso(lo)) + "&to=" + encodeURIComponent(iso(hi)), { method: "POST" })
        .then((r) => r.text().then((t) => { if (!r.ok) throw new Error(t.trim()); }))
        .then(() => poll())
        .catch((err) => { status.textContent = err.message; });
    });
    function show(d) {
      const j = d.job || {};
      if (j.state === "running") status.textContent = "exporting: " + Math.round(100 * (j.progress || 0)) + " % (" + (j.step || "") + ")";
      else if (j.state === "failed") status.textContent = "export failed: " + j.error;
      else if (j.state === "done") status.textContent = "export done: " + j.records + " records, " + j.frames + " frames" + (j.video_problem ? " (" + j.video_problem + ")" : "");
      files.textContent = "";
      (d.files || []).slice(0, 6).forEach((f) => {
        files.append(el("a", { href: "/exports/" + encodeURIComponent(f.name), download: f.name, class: "export-file", text: f.name }), " ");
      });
      return j.state === "running";
    }
    function poll() {
      fetch("/api/export").then((r) => r.json()).then((d) => { if (show(d)) setTimeout(poll, 400); }).catch(() => {});
    }
    poll();
  }

  // -- search by electrode (server) ----------------------------------------------------------------
  function electrodeUi() {
    const box = el("div", { id: "electrode-search", class: "meta" });
    const pins = el("input", { id: "electrode-pins", type: "text", placeholder: "pins, e.g. 12, 13 or 40-42" });
    const go = el("button", { type: "button", id: "electrode-go", text: "find" });
    const board = el("button", { type: "button", id: "electrode-board", text: "board picture" });
    const out = el("div", { id: "electrode-results" });
    const grid = el("div", { id: "electrode-grid" });
    box.append(el("label", { text: "electrodes " }, pins), " ", go, " ", board, grid, out);
    bar.append(box);
    board.addEventListener("click", () => {
      grid.textContent = "loading the board…";
      fetch("/api/electrodes").then((r) => r.json()).then((d) => {
        grid.textContent = "";
        if (!d.layout) { grid.textContent = "the stream sent no board layout: type pin numbers"; return; }
        const table = el("table", { class: "board" });
        d.layout.forEach((row) => {
          const tr = el("tr");
          row.forEach((pin) => {
            const td = el("td");
            if (pin !== null) {
              const b = el("button", { type: "button", class: "pin", "data-pin": String(pin), text: String(pin) });
              b.addEventListener("click", () => {
                const set = new Set(pins.value.split(/[ ,]+/).filter(Boolean));
                if (set.has(String(pin))) set.delete(String(pin)); else set.add(String(pin));
                pins.value = Array.from(set).join(", ");
                b.classList.toggle("on", set.has(String(pin)));
              });
              td.append(b);
            }
            tr.append(td);
          });
          table.append(tr);
        });
        grid.append(table);
      }).catch(() => { grid.textContent = "the board picture could not be loaded"; });
    });
    function find() {
      out.textContent = "searching the night's telemetry…";
      fetch("/api/electrodes?pins=" + encodeURIComponent(pins.value)).then((r) => r.ok ? r.json() : r.text().then((t) => { throw new Error(t.trim()); }))
        .then((d) => {
          out.textContent = "";
          out.append(el("div", { text: d.moments.length + (d.more ? "+" + d.more : "") + " moment(s) for pin(s) " + d.pins.join(", ") +
            " · query " + d.query_ms + " ms (index built once in " + d.index_seconds + " s)" }));
          const ul = el("ul", { class: "moments" });
          d.moments.slice(0, 500).forEach((m) => {
            const href = m.segment ? "/segment/" + encodeURIComponent(m.segment) + "?t=" + m.iso : (d.timelapse ? "/api/timelapse?t=" + m.iso : null);
            const li = el("li");
            li.append(href ? el("a", { href: href, class: "at", text: clock(m.time) }) : el("span", { text: clock(m.time) }),
              " pin " + m.pin + " " + m.what + (m.segment ? "" : d.timelapse ? " (no segment: nearest timelapse frame)" : " (no segment)"));
            ul.append(li);
          });
          out.append(ul);
        })
        .catch((err) => { out.textContent = err.message; });
    }
    go.addEventListener("click", find);
    pins.addEventListener("keydown", (e) => { if (e.key === "Enter") find(); });
  }

  // -- wiring --------------------------------------------------------------------------------------
  const changed = () => { readBar(); writeUrl(); apply(); };
  ruleSel.addEventListener("change", changed);
  unrev.addEventListener("change", changed);
  fromBox.addEventListener("change", changed);
  toBox.addEventListener("change", changed);
  clearBtn.addEventListener("click", () => {
    ruleSel.value = ""; fromBox.value = ""; toBox.value = ""; unrev.checked = false; changed();
    const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
    const tl = doc && doc.get_model_by_name("timeline");
    if (tl && data.span) { const p = Math.max(1, (data.span[1] - data.span[0]) * 0.01); tl.x_range.start = (data.span[0] - p) * 1000; tl.x_range.end = (data.span[1] + p) * 1000; }
  });
  if (server) {
    window.autorecOpenAt = (name, t) => { location.href = "/segment/" + encodeURIComponent(name) + "?t=" + iso(t); };
    exportUi();
    electrodeUi();
  }
  fillRules();
  apply();
  if (server) { loadReviewed(); setInterval(loadReviewed, 15000); }
  // cards added later (the web page adds segments as they close): filter and group them too
  let pending = false;
  new MutationObserver(() => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; const n = cards().length; if (n !== Number(bar.dataset.cards || 0)) { bar.dataset.cards = n; fillRules(); apply(); } });
  }).observe(document.body, { childList: true, subtree: true });
  bar.dataset.cards = cards().length;
  document.body.dataset.reviewReady = "1";
})();
