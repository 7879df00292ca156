"""One look per configuration, the same in the dashboard's charts (Plotly) and the audit report (matplotlib): a colour
and a line style by the configuration's grid position.

The twelve configurations of the grid (Base, TTA, DE, DE+TTA, CE, CE+TTA, each ± TS) get twelve different colours;
the line styles cycle through six dash patterns, so neighbours in grid order differ in both and a grey print still
tells the lines apart. Positions past the twelfth start again.
"""

from __future__ import annotations

from dataclasses import dataclass

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
           "#e377c2", "#17becf", "#bcbd22", "#393b79", "#000000", "#7b4173")
#: Plotly's dash name → matplotlib's dash pattern
DASHES: dict[str, str | tuple[int, tuple[int, ...]]] = {
    "solid": "-", "dash": (0, (6, 3)), "dot": (0, (1, 2)), "dashdot": (0, (6, 2, 1, 2)),
    "longdash": (0, (12, 4)), "longdashdot": (0, (12, 3, 2, 3)),
}


@dataclass(frozen=True)
class LineStyle:
    """A configuration's colour (``#rrggbb``) and dash (Plotly's name; :attr:`matplotlib_dash` for the report)."""

    colour: str
    dash: str

    @property
    def matplotlib_dash(self) -> str | tuple[int, tuple[int, ...]]:
        return DASHES[self.dash]


STYLES = tuple(LineStyle(colour, tuple(DASHES)[index % len(DASHES)]) for index, colour in enumerate(COLOURS))


def style(position: int) -> LineStyle:
    """The look of the configuration at grid ``position``."""
    return STYLES[position % len(STYLES)]
