// The slice browser's stage (viewer_layout.py, viewer_client.py): its height (the screen below its top), layouts,
// fullscreen, zoom and pan kept alike in every view, right-drag window/level, and the view kept in the address bar
// (viewer_address.py reads it back) so that the copied link opens the view as it is.
// Zoom is one factor and one centre (continuous voxel coordinates z, y, x) for all views: Ctrl + wheel zooms at the
// pointer, Plotly's own pan (drag) moves the centre; every view then shows the same centre and factor, a redrawn view
// too (showZoom, once drawn).
(function () {
    "use strict";
    const ZOOM_STEP = 1.25;
    const MAX_ZOOM = 20;
    const WL_PER_PIXEL = {window: 4, level: 2};  // HU per pixel of a right-drag
    const WL_INTERVAL_MS = 120;
    const zoom = {factor: 1, centre: null, stage: null};
    let syncing = false;
    let shown = null;  // the view's settings from the address callback (stage.address), for the address bar

    function stage() { return document.getElementById("viewer-stage"); }
    function ensureZoom() {  // each page's stage starts at the zoom its address gave (data-zoom)
        const s = stage();
        if (s && zoom.stage !== s) {
            const given = s.dataset.zoom ? JSON.parse(s.dataset.zoom) : null;
            zoom.stage = s;
            zoom.factor = given ? given.factor : 1;
            zoom.centre = given ? given.centre : null;
        }
    }

    function writeAddress() {  // the address bar follows the view, without a reload or a new history entry
        if (!shown || !stage()) { return; }
        const query = new URLSearchParams(window.location.search);
        Object.keys(shown).forEach(function (key) {
            if (shown[key] === null || shown[key] === undefined || shown[key] === "") {
                query.delete(key);
            } else {
                query.set(key, shown[key]);
            }
        });
        if (zoom.factor > 1 && zoom.centre) {
            query.set("zoom", [zoom.factor].concat(zoom.centre).map(function (v) { return +v.toFixed(2); }).join(","));
        } else {
            query.delete("zoom");
        }
        const address = window.location.pathname + "?" + query.toString().replace(/%2C/g, ",");
        if (address !== window.location.pathname + window.location.search) {
            window.history.replaceState(window.history.state, "", address);
        }
    }
    function geometry() { const s = stage(); return s ? JSON.parse(s.dataset.geometry) : null; }
    function plots() { return Array.from(document.querySelectorAll("#viewer-stage .qa-view .js-plotly-plot")); }
    function planeOf(gd) { return gd.closest(".qa-view").dataset.plane; }

    function fit() {  // the reading area fills the window below its own top
        const reading = document.getElementById("viewer-reading");
        if (reading && !document.fullscreenElement) {
            const top = reading.getBoundingClientRect().top + window.scrollY;
            document.documentElement.style.setProperty("--qa-stage-top", Math.ceil(top + 8) + "px");
        }
    }

    function toMm(g, along, u) {  // voxel coordinate u along a view's rows or columns → figure mm
        const n = along === "rows" ? g.nRows : g.nCols;
        const flip = along === "rows" ? g.flipRows : g.flipCols;
        return (flip ? n - u : u) * (along === "rows" ? g.rowMm : g.colMm);
    }
    function toVoxel(g, along, mm) {
        const n = along === "rows" ? g.nRows : g.nCols;
        const flip = along === "rows" ? g.flipRows : g.flipCols;
        const d = mm / (along === "rows" ? g.rowMm : g.colMm);
        return flip ? n - d : d;
    }

    function ranges(g) {
        const width = g.nCols * g.colMm, height = g.nRows * g.rowMm;
        if (zoom.factor <= 1 || !zoom.centre) {
            return {"xaxis.range": [0, width], "yaxis.range": [height, 0]};
        }
        const cx = toMm(g, "cols", zoom.centre[g.cols]), cy = toMm(g, "rows", zoom.centre[g.rows]);
        const w = width / zoom.factor / 2, h = height / zoom.factor / 2;
        return {"xaxis.range": [cx - w, cx + w], "yaxis.range": [cy + h, cy - h]};
    }

    // A relayout in the middle of a draw (Plotly.react) leaves the draw's promise unresolved, and dcc.Graph queues
    // every later figure behind it: the view would never show another slice. So the stage counts each view's draws
    // in flight (dcc.Graph draws with the global Plotly.react) and zooms a view only between draws: after each draw,
    // since a new slice comes with the whole image's ranges (showZoom).
    function pending(gd) { return (gd.qaDrawing || 0) > 0 || gd.classList.contains("dash-graph--pending"); }

    function trackDraws() {
        const plotly = window.Plotly;
        if (!plotly || plotly.react.qaTracked) { return; }
        const react = plotly.react;
        plotly.react = function (gd) {
            const view = gd && gd.closest && gd.closest("#viewer-stage .qa-view") ? gd : null;
            if (view) { view.qaDrawing = (view.qaDrawing || 0) + 1; }
            const drawn = react.apply(this, arguments);
            if (view) {
                const done = function () {
                    view.qaDrawing -= 1;
                    if (!view.qaDrawing) { setTimeout(function () { showZoom(view); }, 0); }
                };
                Promise.resolve(drawn).then(done, done);
            }
            return drawn;
        };
        plotly.react.qaTracked = true;
    }

    function showZoom(gd) {  // a drawn view to the stage's zoom, unless it shows it already
        const geo = geometry();
        if (!geo || !gd._fullLayout || !gd._fullLayout.xaxis || pending(gd)) { return; }
        gd.qaZoomed = true;
        const want = ranges(geo[planeOf(gd)]), tolerance = 1e-6 * (1 + Math.abs(want["xaxis.range"][1]));
        const shown = [gd._fullLayout.xaxis.range, gd._fullLayout.yaxis.range];
        const same = [want["xaxis.range"], want["yaxis.range"]].every(function (range, i) {
            return Math.abs(range[0] - shown[i][0]) < tolerance && Math.abs(range[1] - shown[i][1]) < tolerance;
        });
        if (!same) {
            syncing = true;
            try { window.Plotly.relayout(gd, want); } finally { syncing = false; }
        }
    }

    function apply(except) {
        const geo = geometry();
        if (!geo) { return; }
        writeAddress();
        syncing = true;
        try {
            plots().forEach(function (gd) {
                if (gd === except || !gd.data || !gd.data.length) { return; }
                if (!pending(gd)) { window.Plotly.relayout(gd, ranges(geo[planeOf(gd)])); }
            });
        } finally {
            syncing = false;
        }
    }

    function centreFrom(gd, xRange, yRange) {  // the zoom's centre after a view moved to these ranges
        const geo = geometry(), g = geo[planeOf(gd)];
        const centre = zoom.centre ? zoom.centre.slice() : [0, 1, 2].map(function (a) {
            const plane = Object.keys(geo).find(function (p) { return geo[p].rows === a; }) || "axial";
            return (a === geo[plane].rows ? geo[plane].nRows : geo[plane].nCols) / 2;
        });
        centre[g.cols] = toVoxel(g, "cols", (xRange[0] + xRange[1]) / 2);
        centre[g.rows] = toVoxel(g, "rows", (yRange[0] + yRange[1]) / 2);
        return centre;
    }

    function bind(gd) {  // Plotly's pan of one view moves the others
        if (gd.qaBound || !gd.on) { return; }
        gd.qaBound = true;
        gd.on("plotly_relayout", function (change) {
            if (syncing || !gd.layout || change["xaxis.autorange"] || !("xaxis.range[0]" in change
                    || "xaxis.range" in change)) {
                return;
            }
            const centre = centreFrom(gd, gd.layout.xaxis.range, gd.layout.yaxis.range);
            const moved = !zoom.centre || centre.some(function (c, i) { return Math.abs(c - zoom.centre[i]) > 1e-3; });
            if (zoom.factor > 1 && moved) {  // only a user's pan moves the others (no echo of our own relayout)
                zoom.centre = centre;
                apply(gd);
            }
        });
    }

    document.addEventListener("wheel", function (event) {
        const view = event.target.closest && event.target.closest("#viewer-stage .qa-view");
        if (!view || !event.ctrlKey) { return; }
        event.preventDefault();
        event.stopImmediatePropagation();
        ensureZoom();
        const gd = view.querySelector(".js-plotly-plot");
        if (!gd || !gd._fullLayout || !gd._fullLayout.xaxis) { return; }
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const box = gd.querySelector(".nsewdrag") || gd;
        const rect = box.getBoundingClientRect();
        const px = xa.p2d(event.clientX - rect.left), py = ya.p2d(event.clientY - rect.top);
        const before = zoom.factor;
        zoom.factor = Math.max(1, Math.min(MAX_ZOOM, zoom.factor * (event.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP)));
        const keep = before / zoom.factor;  // the point under the pointer stays put
        const cx = (xa.range[0] + xa.range[1]) / 2, cy = (ya.range[0] + ya.range[1]) / 2;
        zoom.centre = centreFrom(gd, [px + (cx - px) * keep, px + (cx - px) * keep],
                                 [py + (cy - py) * keep, py + (cy - py) * keep]);
        apply(null);
    }, {passive: false, capture: true});

    let drag = null;
    function number(id) { const el = document.getElementById(id); return el ? parseFloat(el.value) : NaN; }
    ["pointerdown", "mousedown"].forEach(function (name) {
        document.addEventListener(name, function (event) {
            const view = event.target.closest && event.target.closest("#viewer-stage .qa-view");
            if (!view || event.button !== 2) { return; }
            event.preventDefault();
            event.stopImmediatePropagation();
            if (!drag) {
                drag = {x: event.clientX, y: event.clientY, window: number("viewer-window"),
                        level: number("viewer-level"), sent: 0};
            }
        }, {capture: true});
    });
    document.addEventListener("contextmenu", function (event) {
        if (event.target.closest && event.target.closest("#viewer-stage .qa-view")) { event.preventDefault(); }
    });
    function sendWindowLevel(event, force) {
        const now = Date.now();
        if (!drag || (!force && now - drag.sent < WL_INTERVAL_MS)) { return; }
        drag.sent = now;
        const w = Math.max(1, Math.round(drag.window + (event.clientX - drag.x) * WL_PER_PIXEL.window));
        const l = Math.round(drag.level - (event.clientY - drag.y) * WL_PER_PIXEL.level);
        window.dash_clientside.set_props("viewer-window", {value: Math.min(4000, w)});
        window.dash_clientside.set_props("viewer-level", {value: Math.max(-1024, Math.min(3000, l))});
    }
    document.addEventListener("pointermove", function (event) { sendWindowLevel(event, false); }, {capture: true});
    document.addEventListener("pointerup", function (event) {
        if (drag && event.button === 2) { sendWindowLevel(event, true); drag = null; }
    }, {capture: true});

    function zoomNew() {  // a view drawn for the first time shows the page's zoom
        plots().forEach(function (gd) {
            if (gd.qaZoomed !== true && gd.data && gd.data.length) { showZoom(gd); }
        });
    }

    trackDraws();
    setInterval(function () { trackDraws(); ensureZoom(); fit(); plots().forEach(bind); zoomNew(); }, 200);
    window.addEventListener("resize", fit);

    window.dash_clientside = Object.assign({}, window.dash_clientside, {
        stage: {
            layout: function (grid, b) {
                setTimeout(fit, 0);
                return "qa-stage qa-layout-" + (grid || "mpr") + (b === null || b === undefined ? "" : " qa-with-b");
            },
            preset: function (key, presets) {
                const chosen = presets && presets[key];
                return chosen ? chosen : [window.dash_clientside.no_update, window.dash_clientside.no_update];
            },
            fullscreen: function () {
                const reading = document.getElementById("viewer-reading");
                if (document.fullscreenElement) {
                    document.exitFullscreen();
                } else if (reading) {
                    reading.requestFullscreen();
                }
                return "the views fill the screen (Esc leaves)";
            },
            address: function (axial, coronal, sagittal, a, b, w, l, overlays, grid, budget, thickness, fill,
                               colours) {
                shown = {at: [axial, coronal, sagittal].join(","), a: a, b: b, w: w, l: l, grid: grid,
                         overlays: overlays && overlays.length ? overlays.join(",") : "none",
                         budget: budget === null || budget === undefined ? null : +(budget * 100).toFixed(4),
                         thickness: thickness, fill: fill ? 1 : 0,
                         colours: (colours || []).map(function (c) { return (c || "").replace("#", ""); }).join(",")};
                ensureZoom();
                writeAddress();
                return window.dash_clientside.no_update;
            },
            resetZoom: function () {
                zoom.factor = 1;
                zoom.centre = null;
                apply(null);
                return "back to the whole image";
            },
            copyLink: function () {
                const link = window.location.href;
                if (navigator.clipboard) { navigator.clipboard.writeText(link).catch(function () {}); }
                return "Link copied";
            },
        },
    });
}());
