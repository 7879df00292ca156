"""The protocol filters shared by the cohort and comparison pages: model set, protocol, repeats, date range, the
cases' reference kind (every reference, final clinical contours, research references; each with its n of cases) and
their acquisition (a stratum of :mod:`pipeline.store.strata`: scanner, manufacturer, model, kernel, slice thickness,
kVp or contrast, and one of its groups, ``unknown`` included; each with its n of cases).

Each page gets its own copy (ids prefixed with the page's name) and registers the copy's callbacks once.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
from dash import Input, Output, callback, dcc, html
from dash.development.base_component import Component

from pipeline.store.cohort_numbers import CohortFilter
from pipeline.store.references import EVERY_REFERENCE_LABEL, KIND_LABELS
from pipeline.store.strata import SCANNER, STRATA, STRATUM_KEYS
from qa_dashboard import inputs
from qa_dashboard.queries.cohort import ProtocolInfo, acquisition_counts, protocol, protocols, reference_kind_counts
from qa_dashboard.store import get_store

MAX_REPEATS = 10_000
EVERY_REFERENCE = "all"
REFERENCE_KIND_LABELS = {EVERY_REFERENCE: EVERY_REFERENCE_LABEL, **KIND_LABELS}
EVERY_SCAN = ""  # no acquisition filter (the group choice's value)
MAX_GROUP = 200  # characters of a group name


def parse_protocol(value: str | None, infos: list[ProtocolInfo]) -> ProtocolInfo | None:
    """The protocol named by a ``?protocol=ID`` query value (the newest when absent); None when it names none."""
    if value is None:
        return infos[0] if infos else None
    return next((p for p in infos if str(p.id) == value.strip()), None)


def protocol_filters(prefix: str, infos: list[ProtocolInfo], chosen: ProtocolInfo, counts: dict[str, int],
                     groups: dict[str, int]) -> Component:
    """Model set, protocol, repeats, processing dates, reference kind (``counts``: the chosen protocol's cases per
    kind) and acquisition (``groups``: its cases per scanner); ``chosen`` preselected."""
    model_sets = {p.model_set_id: p.model_set for p in infos}
    return html.Div([dbc.Row(
        [
            dbc.Col([dbc.Label("Model set"), dcc.Dropdown(
                id=f"{prefix}-model-set", options=[{"label": n, "value": i} for i, n in model_sets.items()],
                value=chosen.model_set_id, clearable=False)], md=3),
            dbc.Col([dbc.Label("Protocol"), dcc.Dropdown(
                id=f"{prefix}-protocol", options=_protocol_options(infos, chosen.model_set_id), value=chosen.id,
                clearable=False)], md=4),
            dbc.Col([dbc.Label("Repeats"), dcc.Dropdown(
                id=f"{prefix}-repeats", options=_repeat_options(chosen), value=list(range(chosen.repeats)),
                multi=True, placeholder="every repeat")], md=2),
            dbc.Col([dbc.Label("Processed between"), html.Div(dcc.DatePickerRange(
                id=f"{prefix}-dates", display_format="YYYY-MM-DD", clearable=True))], md=3),
        ],
        className="g-2 mb-2",
    ), dbc.Row([dbc.Col([dbc.Label("References"), dcc.Dropdown(
        id=f"{prefix}-reference-kind", options=reference_kind_options(counts), value=EVERY_REFERENCE,
        clearable=False)], md=4), *acquisition_filters(prefix, groups)], className="g-2 mb-3")])


def acquisition_filters(prefix: str, groups: dict[str, int]) -> list[Component]:
    """The stratum (``{prefix}-stratum``, the scanner first) and one of its groups (``{prefix}-group``, every scan
    first); ``groups``: the scanner's groups with their n of cases."""
    return [
        dbc.Col([dbc.Label("Acquisition"), dcc.Dropdown(
            id=f"{prefix}-stratum", options=[{"label": s.label, "value": s.key} for s in STRATA], value=SCANNER,
            clearable=False)], md=3),
        dbc.Col([dbc.Label("Group"), dcc.Dropdown(
            id=f"{prefix}-group", options=group_options(groups), value=EVERY_SCAN, clearable=False)], md=5),
    ]


def group_options(groups: dict[str, int]) -> list[dict[str, object]]:
    """The group choices, each with its number of cases; every scan first."""
    return [{"label": f"every scan (n = {sum(groups.values())})", "value": EVERY_SCAN},
            *({"label": f"{name} (n = {n})", "value": name} for name, n in groups.items())]


def register_group_reset(prefix: str) -> None:
    """Another stratum chosen: every scan again (its groups are other ones); for pages whose group menu follows
    their own content (worklist, trends)."""

    @callback(Output(f"{prefix}-group", "value"), Input(f"{prefix}-stratum", "value"), prevent_initial_call=True)
    def _every_scan(_key: Any) -> str:
        return EVERY_SCAN


def stratum(value: Any, name: str) -> str:
    """A stratum key of :data:`pipeline.store.strata.STRATA` (InputError otherwise)."""
    return str(inputs.choice(value or SCANNER, name, STRATUM_KEYS))


def acquisition_choice(key: Any, group: Any) -> tuple[str, str] | None:
    """The (stratum, group) the controls filter by; None for every scan."""
    group = inputs.text(group or EVERY_SCAN, "acquisition group", MAX_GROUP)
    return None if group == EVERY_SCAN else (stratum(key, "acquisition stratum"), group)


def reference_kind_options(counts: dict[str, int]) -> list[dict[str, object]]:
    """The reference-kind choices, each with its number of cases."""
    counts = counts | {EVERY_REFERENCE: sum(counts.values())}
    return [{"label": f"{label} (n = {counts.get(kind, 0)})", "value": kind}
            for kind, label in REFERENCE_KIND_LABELS.items()]


def _protocol_options(infos: list[ProtocolInfo], model_set_id: int) -> list[dict[str, object]]:
    return [{"label": p.label, "value": p.id} for p in infos if p.model_set_id == model_set_id]


def _repeat_options(info: ProtocolInfo) -> list[dict[str, object]]:
    return [{"label": f"repeat {r}", "value": r} for r in range(info.repeats)]


def cohort_filter(protocol_id: Any, repeats: Any, start: Any, end: Any, configurations: Any = None,
                  reference_kind: Any = None, stratum_key: Any = None, group: Any = None) -> CohortFilter | None:
    """The filter of the controls' values, checked (no repeat chosen = every repeat, no reference kind = every
    reference, no group = every scan); None without a protocol."""
    protocol_id = inputs.optional(inputs.integer, protocol_id, "protocol")
    if protocol_id is None:
        return None
    repeats = inputs.listed(repeats, "repeats", lambda v, n: inputs.integer(v, n, 0, MAX_REPEATS))
    start, end = inputs.day(start, "start date"), inputs.day(end, "end date")
    if configurations is not None:
        configurations = inputs.listed(configurations, "configurations", inputs.integer)
    kind = inputs.choice(reference_kind or EVERY_REFERENCE, "reference kind", tuple(REFERENCE_KIND_LABELS))
    def day(value: str | None) -> date | None:
        return date.fromisoformat(value[:10]) if value else None

    return CohortFilter(int(protocol_id), tuple(sorted(repeats)) if repeats else None,
                        tuple(configurations) if configurations is not None else None, day(start), day(end),
                        None if kind == EVERY_REFERENCE else kind, acquisition_choice(stratum_key, group))


def filter_query(chosen: CohortFilter) -> str:
    """The filter as an export address's query (``protocol=ID&repeat=R…&start=&end=&reference=KIND&stratum=KEY&
    group=NAME``), what :mod:`qa_dashboard.exports` reads back."""
    query = [("protocol", chosen.protocol_id), *(("repeat", r) for r in chosen.repeats or ()),
             *(("start", str(d)) for d in (chosen.start,) if d), *(("end", str(d)) for d in (chosen.end,) if d),
             *(("reference", k) for k in (chosen.reference_kind,) if k),
             *((("stratum", chosen.acquisition[0]), ("group", chosen.acquisition[1])) if chosen.acquisition else ())]
    return urlencode(query)


def register_protocol_callbacks(prefix: str) -> None:
    """The model set narrows the protocols; a protocol sets its repeats."""

    @callback(Output(f"{prefix}-protocol", "options"), Output(f"{prefix}-protocol", "value"),
              Input(f"{prefix}-model-set", "value"), prevent_initial_call=True)
    def _protocols_of(model_set_id: Any) -> tuple[list[dict[str, object]], int | None]:
        model_set_id = inputs.integer(model_set_id, f"{prefix}-model-set.value")
        with get_store().session() as session:
            options = _protocol_options(protocols(session), model_set_id)
        return options, options[0]["value"] if options else None  # type: ignore[return-value]

    @callback(Output(f"{prefix}-repeats", "options"), Output(f"{prefix}-repeats", "value"),
              Output(f"{prefix}-reference-kind", "options"), Input(f"{prefix}-protocol", "value"),
              prevent_initial_call=True)
    def _repeats_of(protocol_id: Any) -> tuple[list[dict[str, object]], list[int], list[dict[str, object]]]:
        protocol_id = inputs.optional(inputs.integer, protocol_id, f"{prefix}-protocol.value")
        if protocol_id is None:
            return [], [], reference_kind_options({})
        with get_store().session() as session:
            info = protocol(session, protocol_id)
            counts = reference_kind_counts(session, protocol_id)
        return _repeat_options(info), list(range(info.repeats)), reference_kind_options(counts)

    @callback(Output(f"{prefix}-group", "options"), Output(f"{prefix}-group", "value"),
              Input(f"{prefix}-protocol", "value"), Input(f"{prefix}-stratum", "value"), prevent_initial_call=True)
    def _groups_of(protocol_id: Any, key: Any) -> tuple[list[dict[str, object]], str]:
        protocol_id = inputs.optional(inputs.integer, protocol_id, f"{prefix}-protocol.value")
        key = stratum(key, f"{prefix}-stratum.value")
        if protocol_id is None:
            return group_options({}), EVERY_SCAN
        with get_store().session() as session:
            return group_options(acquisition_counts(session, protocol_id, key)), EVERY_SCAN
