// autorec's one time format for people in the browser, as autorec.readable does it on the server:
// local time with whole seconds (or tenths), the date where it matters, UTC for the hover title.
"use strict";
window.autorecTime = (function () {
  const pad = (n, w) => String(n).padStart(w || 2, "0");
  const tenths = (t, digits) => {
    if (!digits) return "";
    const frac = Math.floor((t - Math.floor(t)) * Math.pow(10, digits));
    return "." + pad(frac, digits);
  };
  const parts = (d, utc) => utc
    ? [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()]
    : [d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()];
  function format(t, digits, date, utc) {
    if (t === null || t === undefined || !isFinite(t)) return "–";
    const [y, mo, da, h, mi, s] = parts(new Date(Math.floor(t) * 1000), utc);
    const clock = pad(h) + ":" + pad(mi) + ":" + pad(s) + tenths(t, digits);
    return date ? y + "-" + pad(mo) + "-" + pad(da) + " " + clock : clock;
  }
  return {
    // 02:14:07 (digits 1: 02:14:07.3), local time of day
    clock: (t, digits) => format(t, digits, false, false),
    // 2026-12-07 02:14:07, local date and time
    local: (t, digits) => format(t, digits, true, false),
    // 2026-12-07 01:14:07 UTC, for a title (hover)
    utc: (t, digits) => (t === null || t === undefined ? "" : "UTC " + format(t, digits, true, true)),
  };
})();
