// Links in ag-grid cells, built as elements rather than markup: the cell's text is the row's value (React escapes it,
// so a case named like a markdown or HTML link stays text) and the address is the row's "<field>_href", made by the
// server (components.patient_href). Only an address of this app (one leading slash) becomes a link.
(function () {
    "use strict";
    const functions = (window.dashAgGridComponentFunctions = window.dashAgGridComponentFunctions || {});

    functions.QaLink = function (props) {
        const text = props.value === null || props.value === undefined ? "" : String(props.value);
        const href = props.data ? props.data[props.colDef.field + "_href"] : null;
        if (typeof href !== "string" || !/^\/(?![\/\\])/.test(href)) {
            return React.createElement("span", null, text);
        }
        return React.createElement("a", {href: href}, text);
    };
})();
