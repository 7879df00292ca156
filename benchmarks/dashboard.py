"""Dashboard server times on a seeded cohort: ``python -m benchmarks.dashboard [--patients 1000]``.

Seeds a store (``benchmarks/store_seed.py``: no inference) of N phantom patients × the 12-configuration grid under a
5-repeat protocol, with 512 × 512 × 100 voxel maps for a few cases, then times, through Dash's own HTTP endpoint
(``/_dash-update-component`` on the Flask test client, signed in, so the login guard, routing, the callback and
JSON encoding all count):

- a slice change in the browser: the axial view's callback at a slice not seen before (p50 / p95 over a sweep
  through the volume), with two overlays (entropy heat map + reference contour) and with the four default
  overlays, the crosshair-only update of the other two views, and a rectangle's HU statistics (the measurement
  tool's callback on a slice not read before);
- the cohort calibration page: its layout, the table callback and the reliability diagram callback;
- the review worklist's content callback: its first view at 2 % for ``DE+TTA``, whose regions the seed stored as
  the batch does (``result_regions`` at each of ``ReviewSettings.region_budgets``), against the same first view
  for ``DE+TTA+TS``, whose regions are not stored (the old path, every case's maps read and its regions labelled:
  the peer, in the same run); then the cached view, the other stored budgets, a budget the batch did not store
  (computed from the maps) and a time budget (rounded down to the stored budgets). Only the cases with maps have
  regions; the others are listed as skipped.

Targets (issue 5): slice change p95 ≤ 50 ms for a 512 × 512 slice with two overlays; cohort page ≤ 1 s. Issue 13:
the worklist's first view of 100 cases of 100 × 512 × 512 at the stored budget ≤ 1 s, other budgets ≤ 3 s
(``--patients 100 --map-cases 100 --map-variants 4 --worklist-only``).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.http_client import CALLBACK, Prop, Value, callback_body

log = logging.getLogger("benchmarks.dashboard")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Dash:
    """Calls a Dash callback the way the browser does."""

    def __init__(self, app: Any, url: str) -> None:
        from benchmarks.http_client import csrf_header, ensure_user, login

        self.client = app.server.test_client()
        ensure_user(url)
        if login(self.client).status_code != 302:
            raise RuntimeError("the benchmark's account could not sign in")
        self.headers = csrf_header(self.client)

    def call(self, outputs: list[Prop], inputs: list[Value], state: list[Value], changed: list[str]) -> float:
        """Seconds the server took to answer (the response is checked and decoded)."""
        body = callback_body(outputs, inputs, state, changed)
        began = time.perf_counter()
        response = self.client.post(CALLBACK, json=body, headers=self.headers)
        elapsed = time.perf_counter() - began
        if response.status_code not in (200, 204):
            raise RuntimeError(f"callback {body['output']} answered {response.status_code}: {response.data[:500]!r}")
        if response.status_code == 200:
            json.loads(response.data)
        return elapsed


def plane_request(plane: str, slices: dict[str, int], a: int, overlays: list[str], changed: str, case: str,
                  budget: float) -> tuple[list[Prop], list[Value], list[Value], list[str]]:
    """The slice browser's callback of ``plane``'s figures (configuration ``a`` alone) at ``slices``: outputs,
    inputs, state and the changed input, as :meth:`Dash.call` and :func:`callback_body` take them."""
    others = [p for p in ("axial", "coronal", "sagittal") if p != plane]
    inputs = [(f"slice-{plane}", "data", slices[plane]), *((f"slice-{p}", "data", slices[p]) for p in others),
              ("viewer-a", "value", a), ("viewer-b", "value", None), ("viewer-window", "value", 400),
              ("viewer-level", "value", 40), ("viewer-overlays", "value", overlays),
              ("viewer-structures", "value", [1, 2]), ("viewer-opacity", "value", 0.6),
              ("viewer-threshold", "value", 0.1), ("viewer-budget", "value", budget), ("viewer-thickness", "value", 2),
              ("viewer-fill", "value", False), ("viewer-colours", "data", ["#00e5ff", "#ff4dff"]),
              ("viewer-measurements", "data", [])]
    return ([(f"view-a-{plane}", "figure"), (f"view-b-{plane}", "figure")], inputs, [("viewer-case", "data", case)],
            [changed])


def _plane_call(dash: Dash, plane: str, slices: dict[str, int], a: int, overlays: list[str], changed: str,
                case: str, budget: float) -> float:
    return dash.call(*plane_request(plane, slices, a, overlays, changed, case, budget))


def slice_changes(dash: Dash, case: str, a: int, shape: tuple[int, int, int], budget: float, count: int
                  ) -> dict[str, Any]:
    """Sweep the axial slices (each one new to the caches) with two and with four overlays."""
    z, y, x = shape
    figures: dict[str, Any] = {}
    centre = {"axial": z // 2, "coronal": y // 2, "sagittal": x // 2}
    _plane_call(dash, "axial", centre, a, ["entropy", "reference"], "slice-axial.data", case, budget)  # warm-up
    for label, overlays in (("two overlays (entropy, reference contour)", ["entropy", "reference"]),
                            ("four overlays (+ predicted contour, budget mask)",
                             ["entropy", "reference", "prediction", "budget"])):
        offset = 0 if "two" in label else 1
        times = [_plane_call(dash, "axial", {**centre, "axial": index}, a, overlays, "slice-axial.data", case, budget)
                 for index in range(offset, min(z, offset + 2 * count), 2)]
        figures[label] = {"p50_ms": 1000 * statistics.median(times), "p95_ms": 1000 * _percentile(times, 95),
                          "n": len(times)}
    crosshair = [_plane_call(dash, "coronal", {**centre, "axial": index}, a, ["entropy", "reference"],
                             "slice-axial.data", case, budget) for index in range(0, min(z, count))]
    figures["crosshair update of another view"] = {"p50_ms": 1000 * statistics.median(crosshair),
                                                   "p95_ms": 1000 * _percentile(crosshair, 95), "n": len(crosshair)}
    figures["HU statistics of a 100 × 100 pixel rectangle"] = _measurements(dash, case, a, centre, z, count)
    return figures


def _measurements(dash: Dash, case: str, a: int, centre: dict[str, int], z: int, count: int) -> dict[str, Any]:
    """The measurement callback: a rectangle on axial slices not read before (odd ones, after the sweeps' even)."""
    times = []
    for index in range(1, min(z, 2 * count), 2):
        request = {"tool": "rectangle", "plane": "axial", "side": "a", "points": [[100.0, 100.0], [190.0, 190.0]]}
        times.append(dash.call(
            [("viewer-measurements", "data"), ("viewer-measure-list", "children"), ("viewer-measure-cell", "children")],
            [("viewer-measure-request", "data", request), ("viewer-measure-clear", "n_clicks", None)],
            [("slice-axial", "data", index), ("slice-coronal", "data", centre["coronal"]),
             ("slice-sagittal", "data", centre["sagittal"]), ("viewer-a", "value", a), ("viewer-b", "value", None),
             ("viewer-overlays", "value", ["entropy", "reference"]), ("viewer-measurements", "data", []),
             ("viewer-case", "data", case)], ["viewer-measure-request.data"]))
    return {"p50_ms": 1000 * statistics.median(times), "p95_ms": 1000 * _percentile(times, 95), "n": len(times)}


def cohort_requests(protocol_id: int, repeats: int, structures: list[str], configurations: list[int]
                    ) -> tuple[tuple[list[Prop], list[Value], list[Value], list[str]], ...]:
    """The cohort page's two callbacks (its table, its reliability diagram) for every repeat of the protocol."""
    filters = [("cohort-protocol", "value", protocol_id), ("cohort-repeats", "value", list(range(repeats))),
               ("cohort-dates", "start_date", None), ("cohort-dates", "end_date", None),
               ("cohort-reference-kind", "value", "all"), ("cohort-stratum", "value", "scanner"),
               ("cohort-group", "value", "")]
    return (([("cohort-grid", "rowData")], [*filters, ("cohort-structures", "value", structures)], [],
             ["cohort-protocol.value"]),
            ([("cohort-reliability", "figure")], [*filters, ("cohort-diagram-configurations", "value", configurations)],
             [], ["cohort-protocol.value"]))


def worklist_request(configuration: str, percent: float, minutes: float | None = None
                     ) -> tuple[list[Prop], list[Value], list[Value], list[str]]:
    """The worklist's content callback at ``percent`` of the ROI (or ``minutes`` per patient when given)."""
    kind = "fraction" if minutes is None else "minutes"
    return ([("worklist-content", "children"), ("worklist-url", "search")],
            [("worklist-configuration", "value", configuration), ("worklist-kind", "value", kind),
             ("worklist-percent", "value", percent), ("worklist-minutes", "value", minutes or 5),
             ("worklist-model-set", "value", None), ("worklist-stratum", "value", "scanner"),
             ("worklist-group", "value", "")], [], ["worklist-percent.value"])


def cohort_page(dash: Dash, layout: Callable[..., Any], protocol_id: int, repeats: int, structures: list[str],
                configurations: list[int], runs: int) -> dict[str, Any]:
    """The cohort page's server work: layout, table and reliability diagram (first, then from the page caches)."""
    table, diagram = cohort_requests(protocol_id, repeats, structures, configurations)
    totals = []
    for _ in range(runs):
        began = time.perf_counter()
        layout()
        parts = [time.perf_counter() - began]
        parts.append(dash.call(*table))
        parts.append(dash.call(*diagram))
        totals.append(parts)
    first = totals[0]
    return {"first_layout_ms": 1000 * first[0], "first_table_ms": 1000 * first[1],
            "first_diagram_ms": 1000 * first[2], "first_total_ms": 1000 * sum(first),
            "cached_total_median_ms": 1000 * statistics.median(sum(t) for t in totals[1:]), "runs": runs}


def worklist_page(dash: Dash, stored: str, peer: str, map_cases: int) -> dict[str, Any]:
    """The worklist's content callback: the first view at 2 % with stored regions (``stored``) and without
    (``peer``: the old path, from the maps), the same again (cached), the other stored budgets (1 %, 3 %, 5 %:
    first views), then a budget the batch did not store (1.3 %: computed from the maps) and a time budget (5 min per
    patient: rounded down per case to a stored budget)."""
    def at(configuration: str, percent: float, minutes: float | None = None) -> float:
        return dash.call(*worklist_request(configuration, percent, minutes))

    dash.call([("worklist-percent", "disabled"), ("worklist-minutes", "disabled")],  # warm-up: a trivial callback
              [("worklist-kind", "value", "fraction")], [], ["worklist-kind.value"])
    first, old_path = at(stored, 2.0), at(peer, 2.0)
    figures = {"cases_with_maps": map_cases, "first_2pct_stored_regions_ms": 1000 * first,
               "first_2pct_from_maps_old_path_ms": 1000 * old_path, "cached_2pct_ms": 1000 * at(stored, 2.0)}
    figures |= {f"first_{p:g}pct_stored_regions_ms": 1000 * at(stored, p) for p in (1.0, 3.0, 5.0)}
    figures["first_1.3pct_from_maps_ms"] = 1000 * at(stored, 1.3)
    figures["first_5min_per_patient_ms"] = 1000 * at(stored, 2.0, 5.0)
    return figures


def rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return round(value, 1) if isinstance(value, float) else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000, help="phantom patients (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="protocol repeats (default 5)")
    parser.add_argument("--map-shape", default="100,512,512", help="Z,Y,X of the voxel maps (default 100,512,512)")
    parser.add_argument("--map-cases", type=int, default=2, help="phantoms with voxel maps (default 2)")
    parser.add_argument("--map-variants", type=int, default=0,
                        help="compute this many phantoms' maps and give the other map cases copies (default 0: "
                             "each its own; 100 map cases of 512 × 512 take minutes each otherwise)")
    parser.add_argument("--changes", type=int, default=40, help="slice changes timed per setting (default 40)")
    parser.add_argument("--database-url", help="an empty database to seed (default: a temporary SQLite file)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worklist-only", action="store_true", help="time the worklist only (no slice, cohort)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="qa-dashboard-bench-") as folder:
        figures = _run(args, Path(folder))
    text = json.dumps(rounded(figures), indent=2)
    sys.stdout.write(text + "\n")
    if args.json:
        args.json.write_text(text)
    return 0


def _run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Seed the store (maps under ``workdir``), start the app on it and measure."""
    from alembic import command

    from benchmarks.store_seed import FULL_GRID, SeedPlan, seed_store
    from pipeline.settings import Settings
    from pipeline.store.database import alembic_config

    url = args.database_url or f"sqlite:///{workdir / 'qa.sqlite3'}"
    shape = tuple(int(v) for v in args.map_shape.split(","))
    plan = SeedPlan(patients=args.patients, configurations=FULL_GRID, repeats=args.repeats,
                    map_cases=args.map_cases, map_configurations=("DE+TTA", "DE+TTA+TS"),
                    region_configurations=("DE+TTA",), map_variants=args.map_variants,
                    map_shape=shape, spacing_xyz=(0.9, 0.9, 2.5))  # type: ignore[arg-type]
    command.upgrade(alembic_config(url), "head")
    began = time.perf_counter()
    seeded = seed_store(url, workdir / "artifacts", plan)
    log.info("seeded %d patients × %d configurations in %.0f s (%s)", args.patients, len(FULL_GRID),
             time.perf_counter() - began, url.split("://")[0])

    import dash

    from qa_dashboard.app import create_app
    from qa_dashboard.charts import SHOWN_AT_FIRST

    app = create_app(Settings(database_url=url, artifacts_dir=workdir / "artifacts", exports_dir=workdir / "exports"))
    page = next(p for p in dash.page_registry.values() if p["path"] == "/cohort")
    client = Dash(app, url)
    figures: dict[str, Any] = {
        "store": {"backend": url.split("://")[0], "patients": args.patients, "configurations": len(FULL_GRID),
                  "repeats": args.repeats, "map_shape_zyx": list(shape)},
        "worklist": worklist_page(client, "DE+TTA", "DE+TTA+TS", len(seeded.map_cases)),
    }
    if not args.worklist_only:
        figures["slice_change"] = slice_changes(client, seeded.map_cases[0], seeded.configurations["DE+TTA"], shape,
                                                plan.budget, args.changes)
        figures["cohort_page"] = cohort_page(client, page["layout"], seeded.protocol_id, args.repeats,
                                             ["all foreground", "lymph_nodes", "spleen"],
                                             list(seeded.configurations.values())[:SHOWN_AT_FIRST], runs=3)
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
