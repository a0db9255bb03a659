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
  const fmtTime = (t) => (t ? T.clock(t) : "–");
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  let loading = false, wanted = null, shownSeq = -1;

  function showFrame(seq) {
    if (seq === shownSeq) return;
    if (loading) { wanted = seq; return; }  // one request at a time: a slow link never piles up frames
    loading = true;
    const img = $("frame");
    img.onload = img.onerror = () => {
      loading = false; shownSeq = seq;
      if (wanted !== null && wanted !== seq) { const next = wanted; wanted = null; showFrame(next); }
    };
    img.src = "/api/frame/latest?seq=" + seq;
  }

  function segmentRow(s) {
    const rules = (s.rules || []).map((r) => '<span class=tag>' + esc(r) + "</span>").join(" ");
    const len = s.end - s.start;
    return '<tr data-name="' + esc(s.name) + '"><td><a href="/segment/' + encodeURIComponent(s.name) + '">' +
      '<span title="' + esc(T.utc(s.start)) + '">' + esc(T.local(s.start)) + "</span></a></td><td>" + fmtDur(len) + "</td><td>" +
      fmtSize(s.bytes) + "</td><td>" + rules + "</td><td>" + esc(s.close_reason || "") + "</td></tr>";
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
      const when = stopped.wall !== null && stopped.wall !== undefined ? stopped.wall : stopped.time;
      $("stopped").hidden = false;
      $("stopped").innerHTML = "The recorder stopped at <span title=\"" + esc(T.utc(when)) + "\">" + esc(T.local(when)) +
        "</span> (" + esc(stopped.reason || "no reason given") + "); the figures below are its last ones.";
    } else {
      $("stopped").hidden = true;
      if (st.live === false && st.stale_s !== null && st.stale_s > 10) {
        conn.textContent = "status " + Math.round(st.stale_s) + " s old";
        conn.className = "badge down";
      }
    }
    $("rate").textContent = stopped ? "– (stopped)" : st.msg_per_s !== undefined ? st.msg_per_s : "–";
    // a finished run under serve: the stream time it had reached when it stopped (the journal's stop line)
    const streamTime = st.stream_time || (stopped ? stopped.time : null);
    $("stream-time").textContent = streamTime ? T.local(streamTime) + (st.stream_time ? "" : " (at the stop)") : "–";
    $("stream-time").title = streamTime ? T.utc(streamTime) : "";
    $("disk").textContent = fmtSize(st.disk_free) + (st.disk_below_floor ? " (below the floor: recording paused)" : "");
    const c = st.counters || {};
    $("seg-count").textContent = (c.segments_closed !== undefined ? c.segments_closed : "–") + " closed";
    const open = st.open_segment;
    if (open) {
      const holds = open.holds || {};
      const rows = Object.keys(holds).map((r) => esc(r) + ": " + holds[r].toFixed(1) + " s of post-roll left");
      $("open-segment").innerHTML = "since " + esc(fmtTime(open.start)) + " · " + esc((open.rules || []).join(" + ")) +
        (rows.length ? "<br>" + rows.join("<br>") : "");
    } else {
      $("open-segment").textContent = "none";
    }
    const scores = st.scores || {};
    const names = Object.keys(scores);
    if (names.length) {
      $("scores").innerHTML = names.map((r) => {
        const s = scores[r];
        const ratio = s.threshold > 0 ? s.score / s.threshold : 0;
        const width = Math.min(100, (ratio / 1.5) * 100);
        return '<div class=score data-rule="' + esc(r) + '" data-ratio="' + ratio.toFixed(4) + '">' + esc(r) +
          '<div class=bar><div class="fill' + (ratio >= 1 ? " over" : "") + '" style="width:' + width.toFixed(1) +
          '%"></div><div class=mark></div><span class=label>' + Number(s.score).toPrecision(3) + " / " +
          Number(s.threshold).toPrecision(3) + "</span></div></div>";
      }).join("");
    }
    const alerts = st.alerts || [];
    $("alerts").innerHTML = alerts.length
      ? alerts.map((a) => '<div class=alert>' + esc(a.message || a.key) + " (since " + esc(fmtTime(a.since)) + ")</div>").join("")
      : "none";
    if (st.recent_segments) {
      $("recent").innerHTML = st.recent_segments.slice().reverse().map(segmentRow).join("");
    }
    if (st.frame && st.frame.seq !== undefined) showFrame(st.frame.seq);
    if (st.live === false) $("frame-info").textContent = "camera: only when attached to a run (autorec run --http)";
  }

  function addSegment(s) {
    const body = $("recent");
    if (body.querySelector('tr[data-name="' + CSS.escape(s.name) + '"]')) return;
    body.insertAdjacentHTML("afterbegin", segmentRow(s));
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
