// The metrics document's sections (pages/docs.py) are drawn after the page loads, so the browser finds no element
// for the address's #section when it looks: scroll to it once it exists (at load and when the hash changes).
(function () {
    "use strict";
    function reveal() {
        const id = decodeURIComponent(window.location.hash.slice(1));
        if (!id) {
            return;
        }
        let tries = 0;
        const timer = window.setInterval(function () {
            const target = document.getElementById(id);
            if (target || ++tries > 100) {
                window.clearInterval(timer);
            }
            if (target) {
                target.scrollIntoView();
            }
        }, 100);
    }
    window.addEventListener("load", reveal);
    window.addEventListener("hashchange", reveal);
})();
