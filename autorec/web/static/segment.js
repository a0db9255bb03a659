// autorec segment page: plays the segment's own camera frames at their true times (no transcode).
// `?t=ISO` (or epoch seconds) opens the player at that moment; the firings' links seek without a reload.
"use strict";
(function () {
  const player = document.getElementById("player");
  const video = document.getElementById("video");
  const wanted = () => {
    const text = new URLSearchParams(location.search).get("t");
    if (!text) return null;
    if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
    const ms = Date.parse(text);
    return Number.isFinite(ms) ? ms / 1000 : null;
  };
  // back to the night as it was filtered: the night link keeps the filter the segment was opened from
  try {
    const from = new URL(document.referrer);
    if (from.origin === location.origin && from.pathname === "/night") {
      document.querySelectorAll('a[href="/night"]').forEach((a) => { a.href = "/night" + from.search; });
    }
  } catch (e) { /* no referrer */ }
  let seek = () => {};
  document.addEventListener("click", (e) => {
    const a = e.target.closest && e.target.closest("a.at");
    if (!a || a.pathname !== location.pathname || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    history.replaceState(null, "", a.pathname + a.search);
    seek(wanted());
    (player || video).scrollIntoView({ block: "center", behavior: "instant" });
  });
  if (!player) {  // an exported video is shown instead: its time 0 is the segment's first frame
    if (!video) return;
    const start = Number(video.dataset.start || "NaN");
    seek = (t) => { if (t !== null && Number.isFinite(start)) video.currentTime = Math.max(0, t - start); };
    video.addEventListener("loadedmetadata", () => seek(wanted()));
    return;
  }
  const name = player.getAttribute("data-name");
  const img = document.getElementById("player-frame");
  const scrub = document.getElementById("scrub");
  const play = document.getElementById("play");
  const label = document.getElementById("frame-time");
  let frames = [], i = 0, timer = null;
  const url = (k) => "/api/segments/" + encodeURIComponent(name) + "/frames/" + frames[k].i;

  function show(k) {
    i = Math.max(0, Math.min(frames.length - 1, k));
    img.src = url(i);
    img.dataset.t = String(frames[i].t);
    scrub.value = i;
    label.textContent = (i + 1) + "/" + frames.length + " · " + window.autorecTime.clock(frames[i].t, 1);
    label.title = window.autorecTime.utc(frames[i].t, 1);
    if (i + 1 < frames.length) new Image().src = url(i + 1);  // preload the next one
  }
  // the frame nearest `t` (frames are in time order)
  function nearest(t) {
    let lo = 0, hi = frames.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (frames[mid].t < t) lo = mid + 1; else hi = mid; }
    return lo > 0 && Math.abs(frames[lo - 1].t - t) <= Math.abs(frames[lo].t - t) ? lo - 1 : lo;
  }
  seek = (t) => { if (t !== null && frames.length) { stop(); show(nearest(t)); } };
  function step() {
    if (i + 1 >= frames.length) { stop(); return; }
    const wait = Math.min(1000, Math.max(10, (frames[i + 1].t - frames[i].t) * 1000));
    timer = setTimeout(() => { show(i + 1); step(); }, wait);
  }
  function stop() { clearTimeout(timer); timer = null; play.textContent = "Play"; }
  play.addEventListener("click", () => {
    if (timer) { stop(); return; }
    if (i + 1 >= frames.length) show(0);
    play.textContent = "Pause";
    step();
  });
  scrub.addEventListener("input", () => { stop(); show(Number(scrub.value)); });
  fetch("/api/segments/" + encodeURIComponent(name) + "/frames").then((r) => r.json()).then((d) => {
    frames = d.frames;
    if (!frames.length) { label.textContent = "no camera frames in this segment"; play.disabled = true; return; }
    scrub.max = frames.length - 1;
    const t = wanted();
    show(t !== null ? nearest(t) : 0);
    if (t !== null) player.scrollIntoView({ block: "center", behavior: "instant" });  // opened at a moment: show it
    player.dataset.ready = "1";
  });
})();
// The MCAP download is made on its first request (seconds to minutes for a long segment): say so.
(function () {
  const link = document.getElementById("mcap");
  const note = document.getElementById("mcap-note");
  if (!link || !note) return;
  link.addEventListener("click", () => {
    note.textContent = " preparing the MCAP file (a long segment takes a while; the download starts when it is ready)";
  });
})();
