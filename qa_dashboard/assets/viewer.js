// The slice browser's keyboard and mouse wheel (pages/patient.py). Events become updates of the dcc.Store
// "viewer-nav" ({plane, step}); the clientside callback qa.navigate turns them into slice indices, clamped.
// Keys act only on a view with focus or under the pointer: elsewhere on the page they keep their usual meaning.
// The wheel at a view's first (or last) slice lets the page scroll up (or down); Ctrl + wheel is the stage's zoom
// (viewer_stage.js). D, R, E and Esc choose the measurement tool (viewer_measure.js).
(function () {
    "use strict";
    const STEPS = {ArrowUp: -1, ArrowDown: 1, PageUp: -10, PageDown: 10, Home: "first", End: "last"};
    const PRESETS = ["1", "2", "3", "4", "5"];
    const TOOLS = {d: "distance", r: "rectangle", e: "ellipse", Escape: "navigate"};
    const WHEEL_INTERVAL_MS = 40;
    let hovered = null;
    let lastWheel = 0;
    let position = null;  // the slices shown (qa.track) and the volume's shape, to know a view's ends
    let shape = null;

    function viewOf(target) {
        return target && target.closest ? target.closest(".qa-view") : null;
    }

    function send(plane, step) {
        window.dash_clientside.set_props("viewer-nav", {data: {plane: plane, step: step, at: Date.now()}});
    }

    document.addEventListener("mouseover", function (event) {
        hovered = viewOf(event.target);
    });

    document.addEventListener("wheel", function (event) {
        // a wheel event that lands while plotly redraws a view may target a node already detached from the page:
        // then the view under the pointer decides
        const view = viewOf(event.target) || viewOf(document.elementFromPoint(event.clientX, event.clientY));
        if (!view || event.ctrlKey || event.deltaY === 0) {
            return;
        }
        const plane = view.dataset.plane, step = event.deltaY > 0 ? 1 : -1;
        if (position && shape && (step < 0 ? position[plane] <= 0 : position[plane] >= shape[plane] - 1)) {
            return;  // at the end: the page scrolls
        }
        event.preventDefault();
        hovered = view;
        const now = Date.now();
        if (now - lastWheel >= WHEEL_INTERVAL_MS) {
            lastWheel = now;
            if (position && shape) {  // at once, so that a quick wheel at the end scrolls the page
                position[plane] = Math.max(0, Math.min(shape[plane] - 1, position[plane] + step));
            }
            send(plane, step);
        }
    }, {passive: false});

    document.addEventListener("keydown", function (event) {
        const target = event.target;
        const typing = target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)
            || (target.closest && target.closest("[role=slider]"));
        const view = viewOf(document.activeElement) || (hovered && hovered.isConnected ? hovered : null);
        if (!view || typing || event.ctrlKey || event.metaKey || event.altKey) {
            return;
        }
        if (event.key in STEPS) {
            event.preventDefault();
            send(view.dataset.plane, STEPS[event.key]);
        } else if (PRESETS.includes(event.key)) {
            window.dash_clientside.set_props("viewer-wl", {value: event.key});
        } else if (event.key in TOOLS) {
            window.dash_clientside.set_props("viewer-tool", {value: TOOLS[event.key]});
            window.dispatchEvent(new Event("qa-tool"));
        } else if (event.key === "?") {
            window.dash_clientside.set_props("viewer-help", {is_open: true});
        }
    });

    window.dash_clientside = Object.assign({}, window.dash_clientside, {
        qa: {
            track: function (axial, coronal, sagittal, volume) {  // the slices shown, for the wheel's ends
                position = {axial: axial, coronal: coronal, sagittal: sagittal};
                shape = volume;
                return position;
            },
            navigate: function (nav, axial, coronal, sagittal, shape) {
                const skip = window.dash_clientside.no_update;
                if (!nav || !shape || !(nav.plane in shape)) {
                    return [skip, skip, skip];
                }
                const current = {axial: axial, coronal: coronal, sagittal: sagittal};
                const last = shape[nav.plane] - 1;
                let next = nav.step === "first" ? 0 : nav.step === "last" ? last : current[nav.plane] + nav.step;
                next = Math.max(0, Math.min(last, next));
                return ["axial", "coronal", "sagittal"].map(function (plane) {
                    return plane === nav.plane && next !== current[plane] ? next : skip;
                });
            },
        },
    });
}());
