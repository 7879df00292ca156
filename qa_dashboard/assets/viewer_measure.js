// The slice browser's measurement tools (viewer_measure.py). With a tool chosen in the toolbar (viewer-tool, or the
// keys D, R, E and Esc on a view: viewer.js), a left press on a view no longer pans or moves the crosshair: Distance
// takes two clicks on one view, Rectangle and Ellipse a drag. What was drawn (tool, plane, side and two points in the
// figure's mm) goes to the store viewer-measure-request; the server measures it and draws it with its value.
(function () {
    "use strict";
    const COLOUR = "#00dc00";
    const MIN_DRAG_PX = 3;  // a shorter drag is a slip, not a region
    let pending = null;  // {tool, gd, plane, side, start: [x, y] mm, x, y: client pixels, dragging}

    function tool() {
        const checked = document.querySelector("#viewer-tool input:checked");
        return checked ? checked.value : "navigate";
    }
    function viewOf(target) { return target && target.closest ? target.closest("#viewer-stage .qa-view") : null; }
    function measuring(event) {
        const view = viewOf(event.target);
        return view && event.button === 0 && tool() !== "navigate" ? view : null;
    }
    function at(gd, event) {  // client pixels → the figure's mm, as the axes show them now (zoom and pan included)
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const rect = (gd.querySelector(".nsewdrag") || gd).getBoundingClientRect();
        return [xa.p2d(event.clientX - rect.left), ya.p2d(event.clientY - rect.top)];
    }
    function outline(kind, a, b) {
        if (kind === "distance") { return [[a[0], b[0]], [a[1], b[1]]]; }
        if (kind === "rectangle") { return [[a[0], b[0], b[0], a[0], a[0]], [a[1], a[1], b[1], b[1], a[1]]]; }
        const xs = [], ys = [], cx = (a[0] + b[0]) / 2, cy = (a[1] + b[1]) / 2;
        for (let k = 0; k <= 48; k += 1) {
            xs.push(cx + Math.abs(b[0] - a[0]) / 2 * Math.cos(k * Math.PI / 24));
            ys.push(cy + Math.abs(b[1] - a[1]) / 2 * Math.sin(k * Math.PI / 24));
        }
        return [xs, ys];
    }
    function draw(gd, xs, ys) {  // the measurement being drawn, until the server's figure replaces it
        const index = gd.data.findIndex(function (t) { return t.name === "measure-pending"; });
        if (index < 0) {
            window.Plotly.addTraces(gd, {type: "scatter", x: xs, y: ys, mode: "lines+markers", hoverinfo: "skip",
                                         name: "measure-pending", showlegend: false,
                                         line: {color: COLOUR, dash: "dot", width: 1}, marker: {color: COLOUR, size: 6}});
        } else {
            window.Plotly.restyle(gd, {x: [xs], y: [ys]}, [index]);
        }
    }
    function send(start, end) {
        window.dash_clientside.set_props("viewer-measure-request", {data: {
            tool: pending.tool, plane: pending.plane, side: pending.side, points: [start, end], at: Date.now()}});
        pending = null;
    }

    document.addEventListener("pointerdown", function (event) {
        const view = measuring(event);
        if (!view) { return; }
        event.preventDefault();
        event.stopImmediatePropagation();
        view.focus({preventScroll: true});
        const gd = view.querySelector(".js-plotly-plot");
        if (!gd || !gd._fullLayout || !gd._fullLayout.xaxis) { return; }
        const point = at(gd, event), kind = tool();
        if (kind === "distance" && pending && pending.gd === gd && pending.tool === kind) {
            send(pending.start, point);
            return;
        }
        pending = {tool: kind, gd: gd, plane: view.dataset.plane, side: view.dataset.side, start: point,
                   x: event.clientX, y: event.clientY, dragging: kind !== "distance"};
        draw(gd, [point[0]], [point[1]]);
    }, {capture: true});
    document.addEventListener("mousedown", function (event) {  // Plotly's pan and click start on mousedown
        if (measuring(event)) {
            event.preventDefault();
            event.stopImmediatePropagation();
        }
    }, {capture: true});
    document.addEventListener("pointermove", function (event) {
        if (pending && pending.dragging) {
            const shape = outline(pending.tool, pending.start, at(pending.gd, event));
            draw(pending.gd, shape[0], shape[1]);
        }
    }, {capture: true});
    document.addEventListener("pointerup", function (event) {
        if (!pending || !pending.dragging || event.button !== 0) { return; }
        event.stopImmediatePropagation();
        if (Math.hypot(event.clientX - pending.x, event.clientY - pending.y) < MIN_DRAG_PX) {
            pending = null;
            return;
        }
        send(pending.start, at(pending.gd, event));
    }, {capture: true});
    window.addEventListener("qa-tool", function () { pending = null; });  // a new tool drops a half-drawn one
}());
