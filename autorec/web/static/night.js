// autorec night page: thumbnails fetched as cards scroll into view; new segments added as they close.
"use strict";
(function () {
  function loadStrips(root) {
    const strips = root.querySelectorAll("[data-strip]");
    const load = (el) => {
      const url = el.getAttribute("data-strip");
      el.removeAttribute("data-strip");
      fetch(url).then((r) => r.text()).then((html) => { el.outerHTML = html; }).catch(() => {});
    };
    if (!("IntersectionObserver" in window)) { strips.forEach(load); return; }
    const seen = new IntersectionObserver((entries) => {
      entries.forEach((en) => { if (en.isIntersecting) { seen.unobserve(en.target); load(en.target); } });
    }, { rootMargin: "600px" });
    strips.forEach((el) => seen.observe(el));
  }

  function addSegment(entry) {
    if (document.querySelector('.card[data-name="' + CSS.escape(entry.name) + '"]')) return;
    fetch("/api/segments/" + encodeURIComponent(entry.name) + "/card").then((r) => r.json()).then((card) => {
      const cards = document.querySelectorAll(".card");
      const after = cards.length ? cards[cards.length - 1] : document.getElementById("segments");
      after.insertAdjacentHTML("afterend", card.html);
      const added = document.querySelectorAll(".card");
      const el = added[added.length - 1];
      el.classList.add("new");
      loadStrips(el);
      if (window.Bokeh && Bokeh.documents.length) {
        const src = Bokeh.documents[0].get_model_by_name("segment_bars");
        if (src) src.stream(card.bars);
      }
    }).catch(() => {});
  }

  loadStrips(document);
  // the page may have been rendered a little earlier: add the segments it does not have yet
  fetch("/api/segments").then((r) => r.json()).then((d) => d.segments.forEach(addSegment)).catch(() => {});
  const events = new EventSource("/api/events");
  events.addEventListener("segment", (e) => addSegment(JSON.parse(e.data)));
})();
