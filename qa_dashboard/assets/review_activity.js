// Review time: whether the reviewer used the page (keys, pointer, wheel, scroll, focus) since the last report, and
// only while the page has focus. The review panel's interval asks `activity` every ACTIVITY seconds; it answers a
// report only when the page was used (or when a region opened from the worklist still needs its clock), so an idle
// page sends nothing. The server caps every gap between reports (pipeline.review.timing).
(function () {
    "use strict";
    let used = true;  // opening the page is activity
    const mark = function () { used = true; };
    ["keydown", "pointerdown", "pointermove", "wheel", "scroll", "focus"].forEach(function (name) {
        window.addEventListener(name, mark, {passive: true, capture: true});
    });
    window.dash_clientside = Object.assign({}, window.dash_clientside);
    window.dash_clientside.review = {
        activity: function (ticks, region) {
            const active = used && document.hasFocus();
            used = false;
            const opening = Boolean(region && region.clock === null);
            if (!active && !opening) {
                return window.dash_clientside.no_update;
            }
            return {tick: ticks || 0, active: active};
        },
    };
})();
