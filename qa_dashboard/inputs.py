"""Checks of what a browser sends to a callback: every callback passes its inputs through these before it uses them.

A value of the wrong type, out of its range or too long raises :class:`~pipeline.errors.InputError`; the app's one
handler of user errors answers 400 with the reason and audits it once (:func:`qa_dashboard.app._user_error`), and
nothing reaches the store. The limits are the controls' own (a slider's range, a text box's length).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from datetime import date
from typing import Any, TypeVar

from pipeline.errors import InputError

T = TypeVar("T")
MAX_ID = 2**31 - 1  # database integer ids
MAX_NAME = 200  # case names (images.name), configuration names are shorter
MAX_ROWS = 2000  # selected grid rows
MAX_ITEMS = 100  # chosen options of a multi-select
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T[0-9:.]{0,15})?$")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def integer(value: Any, name: str, low: int = 0, high: int = MAX_ID) -> int:
    """An integer in [low, high] (a JSON number without a fraction)."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{name} must be an integer in [{low}, {high}], not {_shown(value)}")
    return value


def number(value: Any, name: str, low: float, high: float) -> float:
    """A finite number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise InputError(f"{name} must be a number in [{low:g}, {high:g}], not {_shown(value)}")
    return float(value)


def text(value: Any, name: str, max_chars: int = MAX_NAME) -> str:
    """A string of at most ``max_chars`` characters."""
    if not isinstance(value, str) or len(value) > max_chars:
        raise InputError(f"{name} must be text of at most {max_chars} characters, not {_shown(value)}")
    return value


def choice(value: Any, name: str, options: Collection[Any]) -> Any:
    """One of ``options``."""
    if isinstance(value, bool) or value not in options:
        raise InputError(f"{name} must be one of {', '.join(map(str, options))}, not {_shown(value)}")
    return value


def flag(value: Any, name: str) -> bool:
    """A true/false value (None: false)."""
    if value is not None and not isinstance(value, bool):
        raise InputError(f"{name} must be true or false, not {_shown(value)}")
    return bool(value)


def optional(check: Callable[..., T], value: Any, *args: Any, **kwargs: Any) -> T | None:
    """``check(value, ...)``, or None for None."""
    return None if value is None else check(value, *args, **kwargs)


def listed(value: Any, name: str, check: Callable[[Any, str], T], max_items: int = MAX_ITEMS) -> list[T]:
    """A list (None: empty) of at most ``max_items`` values, each passing ``check``."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > max_items:
        raise InputError(f"{name} must be a list of at most {max_items} values, not {_shown(value)}")
    return [check(item, f"{name}[{index}]") for index, item in enumerate(value)]


def record(value: Any, name: str, fields: Mapping[str, Callable[[Any, str], Any]]) -> dict[str, Any]:
    """A JSON object; ``fields`` are checked (each check gets None for a missing key), other keys are dropped."""
    if not isinstance(value, dict):
        raise InputError(f"{name} must be an object, not {_shown(value)}")
    return {key: check(value.get(key), f"{name}.{key}") for key, check in fields.items()}


def clicks(value: Any, name: str) -> int:
    """A button's ``n_clicks`` (None before the first click)."""
    return 0 if value is None else integer(value, name, 0, MAX_ID)


def day(value: Any, name: str) -> str | None:
    """An ISO date (a date picker's value), or None."""
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str) or not DATE.match(value):
            raise ValueError
        date.fromisoformat(value[:10])
    except ValueError:
        raise InputError(f"{name} must be a date YYYY-MM-DD, not {_shown(value)}") from None
    return value


def point(value: Any, name: str) -> tuple[float, float] | None:
    """The first point of a Plotly click or hover (``{"points": [{"x": …, "y": …}]}``), or None without one."""
    if value is None:
        return None
    points = record(value, name, {"points": lambda v, n: listed(v, n, lambda p, m: p, 1000)})["points"]
    if not points or not isinstance(points[0], dict) or "x" not in points[0] or "y" not in points[0]:
        return None
    return number(points[0]["x"], f"{name} x", -1e7, 1e7), number(points[0]["y"], f"{name} y", -1e7, 1e7)
