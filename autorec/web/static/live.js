// autorec live page: renders /api/status and follows /api/events (server-sent events).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const fmtSize = (n) => {
    if (n === null || n === undefined) return "–";
    for (const [u, s] of [["GB", 1e9], ["MB", 1e6], ["kB", 1e3]]) if (n >= s) return (n / s).toFixed(1) + u;
    return n + "B";
  };
  const fmtDur = (s) => (s < 120 ? s.toFixed(1) + "s" : s < 7200 ? (s / 60).toFixed(1) + "min" : (s / 3600).toFixed(1) + "h");
  const T = window.autorecTime;  // /ui/timefmt.js: the one time format (local, UTC on hover)
  const num = (x) => (typeof x === "number" && isFinite(x) ? x : null);
  const fmtTime = (t) => (num(t) ? T.clock(t) : "–");
  const list = (x) => (Array.isArray(x) ? x : []);
  // Every text from the recorder or the directory reaches the page as a text node (textContent), never
  // as markup: a rule, segment or alert name holding "<img onerror=...>" is shown as those characters.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "style") Object.assign(e.style, v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  let loading = false, wanted = null, shownSeq = -1;

  function showFrame(seq) {
    if (seq === shownSeq) return;
    if (loading) { wanted = seq; return; }  // one request at a time: a slow link never piles up frames
    loading = true;
    const img = $("frame");
    img.onload = img.onerror = (e) => {
      loading = false; shownSeq = seq;
      img.hidden = e.type !== "load";  // no picture box with a broken-image icon before or without a frame
      if (wanted !== null && wanted !== seq) { const next = wanted; wanted = null; showFrame(next); }
    };
    img.src = "/api/frame/latest?seq=" + seq;
  }

  function segmentRow(s) {
    const rules = el("td");
    list(s.rules).forEach((r, i) => rules.append(...(i ? [" "] : []), el("span", { class: "tag" }, r)));
    const start = num(s.start), len = num(s.end) !== null && start !== null ? s.end - start : 0;
    const when = start !== null ? el("span", { title: T.utc(start) }, T.local(start)) : "?";
    return el("tr", { "data-name": String(s.name) },
      el("td", {}, el("a", { href: "/segment/" + encodeURIComponent(String(s.name)) }, when)),
      el("td", {}, fmtDur(len)), el("td", {}, fmtSize(num(s.bytes))), rules, el("td", {}, s.close_reason || ""));
  }

  function render(st) {
    const conn = $("conn");
    conn.textContent = st.connected ? "connected" : "disconnected";
    conn.className = "badge " + (st.connected ? "up" : "down");
    const stopped = st.stopped;
    if (stopped) {
      // a finished run (the journal's stop line): say when and why, not stale figures as if live
      conn.textContent = "stopped";
      conn.className = "badge idle";
      const when = num(stopped.wall) !== null ? stopped.wall : num(stopped.time);
      $("stopped").hidden = false;
      $("stopped").replaceChildren("The recorder stopped at ",
        when !== null ? el("span", { title: T.utc(when) }, T.local(when)) : "?",
        " (" + (stopped.reason || "no reason given") + "); the figures below are its last ones.");
    } else {
      $("stopped").hidden = true;
      if (st.live === false && st.stale_s !== null && st.stale_s > 10) {
        conn.textContent = "status " + Math.round(st.stale_s) + " s old";
        conn.className = "badge down";
      }
    }
    $("rate").textContent = stopped ? "– (stopped)" : num(st.msg_per_s) !== null ? st.msg_per_s : "–";
    // a finished run under serve: the stream time it had reached when it stopped (the journal's stop line)
    const streamTime = num(st.stream_time) || (stopped && num(stopped.time) ? stopped.time : null);
    $("stream-time").textContent = streamTime ? T.local(streamTime) + (num(st.stream_time) ? "" : " (at the stop)") : "–";
    $("stream-time").title = streamTime ? T.utc(streamTime) : "";
    $("disk").textContent = fmtSize(st.disk_free) + (st.disk_below_floor ? " (below the floor: recording paused)" : "");
    const c = st.counters || {};
    $("seg-count").textContent = (c.segments_closed !== undefined ? c.segments_closed : "–") + " closed";
    const open = st.open_segment;
    if (open) {
      const holds = open.holds && typeof open.holds === "object" ? open.holds : {};
      const box = $("open-segment");
      box.replaceChildren("since " + fmtTime(open.start) + " · " + list(open.rules).join(" + "));
      for (const r of Object.keys(holds)) {
        const left = num(holds[r]);
        box.append(el("br"), r + ": " + (left !== null ? left.toFixed(1) : "?") + " s of post-roll left");
      }
    } else {
      $("open-segment").textContent = "none";
    }
    const scores = st.scores || {};
    const names = Object.keys(scores);
    if (names.length) {
      $("scores").replaceChildren(...names.map((r) => {
        const s = scores[r] || {};
        const score = num(s.score) || 0, threshold = num(s.threshold) || 0;
        const ratio = threshold > 0 ? score / threshold : 0;
        const width = Math.min(100, (ratio / 1.5) * 100);
        return el("div", { class: "score", "data-rule": r, "data-ratio": ratio.toFixed(4) }, r,
          el("div", { class: "bar" },
            el("div", { class: "fill" + (ratio >= 1 ? " over" : ""), style: { width: width.toFixed(1) + "%" } }),
            el("div", { class: "mark" }),
            el("span", { class: "label" }, score.toPrecision(3) + " / " + threshold.toPrecision(3))));
      }));
    }
    const alerts = list(st.alerts);
    $("alerts").replaceChildren(...(alerts.length
      ? alerts.map((a) => el("div", { class: "alert" }, (a.message || a.key) + " (since " + fmtTime(a.since) + ")"))
      : ["none"]));
    if (st.recent_segments) {
      $("recent").replaceChildren(...list(st.recent_segments).slice().reverse().map(segmentRow));
    }
    if (st.frame && st.frame.seq !== undefined) showFrame(st.frame.seq);
    if (st.live === false) $("frame-info").textContent = "camera: only when attached to a run (autorec run --http)";
  }

  function addSegment(s) {
    const body = $("recent");
    if (body.querySelector('tr[data-name="' + CSS.escape(String(s.name)) + '"]')) return;
    body.prepend(segmentRow(s));
    while (body.rows.length > 20) body.deleteRow(body.rows.length - 1);
  }

  fetch("/api/status").then((r) => r.json()).then(render).catch(() => {});
  fetch("/api/segments").then((r) => r.json()).then((d) => {
    if (!$("recent").rows.length) d.segments.slice(-20).forEach(addSegment);
  }).catch(() => {});
  const events = new EventSource("/api/events");
  events.addEventListener("status", (e) => render(JSON.parse(e.data)));
  events.addEventListener("segment", (e) => addSegment(JSON.parse(e.data)));
  events.addEventListener("frame", (e) => {
    const f = JSON.parse(e.data);
    $("frame-info").textContent = "frame " + f.seq + " at " + fmtTime(f.time);
    showFrame(f.seq);
  });
})();
