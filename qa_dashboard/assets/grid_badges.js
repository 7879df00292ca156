// Review states as badges (as QATrack+ shows a test list's status): the cell's text is the state, unchanged (tables,
// filters and exports read the same word), drawn as a pill whose classes the server gives per state in
// cellRendererParams.badges (qa_dashboard.queries.worklist.STATE_BADGES, the one owner). An unknown or empty value is
// plain text.
(function () {
    "use strict";
    const functions = (window.dashAgGridComponentFunctions = window.dashAgGridComponentFunctions || {});

    functions.QaStateBadge = function (props) {
        const text = props.value === null || props.value === undefined ? "" : String(props.value);
        const badges = props.badges || {};
        const classes = Object.prototype.hasOwnProperty.call(badges, text) ? badges[text] : null;
        if (!text || typeof classes !== "string") {
            return React.createElement("span", null, text);
        }
        return React.createElement("span", {className: "badge rounded-pill qa-state " + classes, title: text}, text);
    };
})();
