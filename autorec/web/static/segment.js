// autorec segment page: plays the segment's own camera frames at their true times (no transcode).
"use strict";
(function () {
  const player = document.getElementById("player");
  if (!player) return;  // an exported video is shown instead
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
    scrub.value = i;
    label.textContent = (i + 1) + "/" + frames.length + " · " + window.autorecTime.clock(frames[i].t, 1);
    label.title = window.autorecTime.utc(frames[i].t, 1);
    if (i + 1 < frames.length) new Image().src = url(i + 1);  // preload the next one
  }
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
    show(0);
  });
})();
