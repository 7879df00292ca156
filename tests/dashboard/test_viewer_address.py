"""The slice browser's view from its address (``qa_dashboard.viewer_address``): defaults, every value read back, and
one clear line for each bad value."""

from __future__ import annotations

import pytest

from qa_dashboard import viewer
from qa_dashboard.viewer_address import DEFAULT_LAYOUT, ViewState, parse_view

AVAILABLE = ("reference", "prediction", "entropy", "budget", "error")
SHAPE = (24, 64, 64)


def test_defaults_and_values() -> None:
    _, window, level = viewer.PRESETS["1"]
    assert parse_view({}, AVAILABLE, SHAPE) == ViewState(window, level, ("reference", "prediction", "entropy",
                                                                         "budget"), DEFAULT_LAYOUT, None)
    state = parse_view({"w": "1500", "l": "-600", "overlays": "budget,reference", "grid": "2x2",
                        "zoom": "2.5,12,31.5,40"}, AVAILABLE, SHAPE)
    assert state == ViewState(1500.0, -600.0, ("reference", "budget"), "2x2", (2.5, 12.0, 31.5, 40.0))
    assert parse_view({"overlays": "none", "zoom": "1,0,0,0"}, AVAILABLE, SHAPE).overlays == ()
    assert parse_view({"zoom": "1,0,0,0"}, AVAILABLE, SHAPE).zoom is None, "factor 1 is the whole image"
    contours = parse_view({"thickness": "4", "fill": "1", "colours": "FF0000,00ff00"}, AVAILABLE, SHAPE)
    assert (contours.thickness, contours.fill, contours.colours) == (4, True, ("#ff0000", "#00ff00"))
    assert (state.thickness, state.fill, state.colours) == (viewer.DEFAULT_THICKNESS, False, ())


@pytest.mark.parametrize(("query", "message"), [
    ({"w": "wide"}, "w='wide' is not a number"),
    ({"w": "0"}, "w=0 must be a window between 1 and 4000 HU"),
    ({"l": "nan"}, "l='nan' is not a number"),
    ({"l": "5000"}, "l=5000 must be a level between -1024 and 3000 HU"),
    ({"overlays": "reference,edits"}, "edits is not one of this case's overlays"),
    ({"grid": "3x3"}, "grid='3x3' must be one of mpr, 1x1, 1x3, 2x2"),
    ({"zoom": "2,1,1"}, "zoom='2,1,1' must be FACTOR,Z,Y,X"),
    ({"zoom": "50,1,1,1"}, "a factor between 1 and 20"),
    ({"zoom": "2,30,1,1"}, "a centre inside the image"),
    ({"thickness": "9"}, "thickness='9' must be a contour width of 1 to 4 pixels"),
    ({"fill": "yes"}, "fill='yes' must be 1"),
    ({"colours": "red,00ff00"}, "colours='red,00ff00' must be colours RRGGBB"),
])
def test_bad_values_are_named(query: dict[str, str | None], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_view(query, AVAILABLE, SHAPE)
