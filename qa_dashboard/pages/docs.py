"""The metrics document (``docs/metrics.md`` of this checkout), read-only, so that a metric header's link works
offline: each heading carries GitHub's anchor of it, the one the registry's ``anchor`` names, and the page scrolls
to the address's ``#section`` (``assets/docs_anchor.js``). The file is read on every visit: what the page shows is
what the checkout holds."""

from __future__ import annotations

import re
from pathlib import Path

import dash
from dash import dcc, html
from dash.development.base_component import Component

from pipeline.metrics import registry
from qa_dashboard.components import DOCS_PATH, not_found

dash.register_page(__name__, path=DOCS_PATH, title="Metrics", name="Metrics")

DOCUMENT = Path(__file__).resolve().parents[2] / registry.DOCS
HEADINGS = {1: html.H2, 2: html.H3, 3: html.H4, 4: html.H5, 5: html.H6, 6: html.H6}


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def sections(text: str) -> list[Component]:
    """The document as anchored headings, each followed by its Markdown body (a heading is a line of ``#``s and a
    space; lines inside a fenced code block are body)."""
    parts: list[Component] = []
    body: list[str] = []
    fenced = False

    def flush() -> None:
        if "".join(body).strip():
            parts.append(dcc.Markdown("\n".join(body)))
        body.clear()

    for line in text.splitlines():
        fenced ^= line.lstrip().startswith("```")
        hashes = len(line) - len(line.lstrip("#"))
        if not fenced and 0 < hashes <= 6 and line[hashes:hashes + 1] == " ":
            flush()
            title = line[hashes:].strip()
            parts.append(HEADINGS[hashes](title, id=slug(title)))
        else:
            body.append(line)
    flush()
    return parts


def layout(**_query: str) -> Component:
    if not DOCUMENT.is_file():
        return not_found(f"This installation has no {registry.DOCS}.")
    return html.Div(sections(DOCUMENT.read_text(encoding="utf-8")), className="qa-docs", id="metrics-document")
