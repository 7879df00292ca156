// The grids' tooltip (colDef.tooltipComponent "QaTooltip"): the text as text (React escapes it) and, on a header
// whose column gives an "href" (components.metric_header), a link to the metric's section of the metrics document.
// The grids keep a tooltip open while the pointer is on it (tooltipInteraction), so the link can be followed.
(function () {
    "use strict";
    const functions = (window.dashAgGridComponentFunctions = window.dashAgGridComponentFunctions || {});

    functions.QaTooltip = function (props) {
        const text = props.value === null || props.value === undefined ? "" : String(props.value);
        const href = props.location === "header" ? props.href : null;
        const link = typeof href === "string" && /^\/(?![\/\\])/.test(href)
            ? React.createElement("a", {href: href, target: "_blank", rel: "noopener"}, "docs/metrics.md ↗")
            : null;
        return React.createElement("div", {className: "qa-tooltip"}, text, link ? " " : null, link);
    };
})();
