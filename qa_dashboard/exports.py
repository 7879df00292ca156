"""Downloads from the dashboard, as Flask routes behind the login guard: the worklist (CSV, Excel), a case's review
regions and entropy map (NIfTI on the original grid, zipped), its regions as a DICOM RTSTRUCT, the audit report
(PDF), the audit log (CSV) and the cohort calibration table (CSV).

Each download is one :meth:`~pipeline.review.service.ReviewService.export`: the role is checked (export; the audit
log also needs view_audit), the file is written under the settings' ``exports_dir`` (``QA_EXPORTS_DIR``, default
``var/exports``, one folder per download, kept: the audit row names its path and SHA-256), and exactly one audit row
says who exported what, or why it was refused (403) or failed. A malformed address is a 400, an unknown case or
configuration a 404, an RTSTRUCT of a case without a DICOM series a 422, each with a one-line reason.

Review-study blinding (:mod:`qa_dashboard.blinding`): a case's regions (NIfTI with its entropy, RTSTRUCT) are
refused (403, audited as ``request.refused``) to a user who reads the case blind (arm A, or not opened yet), and the
worklist, report, cohort and cost-benefit exports, which hold every case's regions or uncertainty numbers, to a user
with a reading in an open study.
"""

from __future__ import annotations

import logging
import math
import shutil
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import flask
from sqlalchemy.orm import Session

from pipeline.errors import InputError, UserError, http_status, one_line
from pipeline.io.rtstruct_export import RtstructError
from pipeline.metrics import cost_benefit
from pipeline.metrics.review_budget import DEFAULT_FRACTION, Budget
from pipeline.metrics.statistics import StatisticsSettings
from pipeline.review.exports import export_case_rtstruct, export_region_maps, write_audit_csv, write_worklist
from pipeline.review.report import gather_report
from pipeline.review.report_pdf import write_report
from pipeline.review.workflow import Action
from pipeline.store.artifacts import safe_name
from pipeline.store.cohort_cost import cost_benefit_rows
from pipeline.store.cohort_numbers import CohortFilter
from pipeline.store.strata import stratum_label
from qa_dashboard import auth, blinding
from qa_dashboard.config import settings
from qa_dashboard.filters import acquisition_choice, cohort_filter
from qa_dashboard.queries.worklist import load_worklist, narrowed
from qa_dashboard.store import Store, get_store
from qa_dashboard.tables import cohort_csv, load_rows

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_DIGITS = 9  # of an id in an address
MAX_VALUES = 100  # repeated values of one query key

MEDIA = {".csv": "text/csv", ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         ".zip": "application/zip", ".dcm": "application/dicom", ".pdf": "application/pdf"}


class BadRequest(InputError):
    """A malformed export address."""


def _budget(args: Any) -> Budget:
    kind, raw = args.get("kind", "fraction"), args.get("value", str(DEFAULT_FRACTION))
    try:
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError
        return Budget(kind, value)
    except ValueError:
        raise BadRequest(f"kind={kind!r}, value={raw!r}: use kind=fraction with a value in [0, 1] or kind=minutes "
                         "with a value >= 0") from None


def _configuration(args: Any) -> str:
    configuration = (args.get("configuration") or "").strip()
    if not configuration:
        raise BadRequest("the address needs ?configuration=NAME")
    return configuration


def _model_set(args: Any) -> str | None:
    """``?model_set=`` (a model set's name or identity); None: the newest with a result of the configuration."""
    return (args.get("model_set") or "").strip() or None


def _acquisition(args: Any) -> tuple[str, str] | None:
    """``&stratum=KEY&group=NAME`` (an acquisition group: :mod:`pipeline.store.strata`); None: every scan."""
    return acquisition_choice(args.get("stratum"), args.get("group"))


def _in_new_folder(user: dict[str, Any], store: Store, produce: Callable[[Store, Path], Path]) -> Path:
    """``produce`` into a new folder of its own under QA_EXPORTS_DIR, removed again when it fails."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = settings().exports_dir / f"{stamp}-{safe_name(str(user['username']))}"
    folder.mkdir(parents=True, exist_ok=False)
    try:
        return produce(store, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _send(kind: str, object_id: str, produce: Callable[[Store, Path], Path], also: Action | None = None) -> Any:
    """One audited export as the signed-in user; the file as an attachment, or a one-line error."""
    user = auth.current_user()
    if user is None:  # the guard answers first; kept for safety
        return flask.jsonify({"error": "authentication required"}), 401
    try:
        store = get_store()
        path = auth.review_service(store.engine).export(
            int(user["user_id"]), kind, object_id, lambda: _in_new_folder(user, store, produce),
            ip=flask.request.remote_addr, also=also)
    except UserError as error:
        status = 422 if isinstance(error, RtstructError) else http_status(error)
        return flask.jsonify({"error": one_line(error)}), status
    response = flask.send_file(path, mimetype=MEDIA.get(path.suffix, "application/octet-stream"),
                               as_attachment=True, download_name=path.name)
    response.headers["Cache-Control"] = "no-store"
    return response


def _read(store: Store, body: Callable[[Session], T]) -> T:
    with store.session() as session:
        return body(session)


def _blind(case: str | None, what: str) -> Any:
    """The 403 for an export that would show the signed-in user what its review study hides (of ``case``, or of
    every case when None); None when it may go ahead."""
    if blinding.hides(case) if case is not None else blinding.in_study():
        return auth.refuse(one_line(blinding.refuse(case, what)), 403)
    return None


def worklist_file(fmt: Literal["csv", "xlsx"]) -> Any:
    """``/export/worklist.csv`` and ``.xlsx``: the worklist's region rows (Excel: cases, regions, about)."""
    args = flask.request.args
    if (refused := _blind(None, "the worklist export")) is not None:
        return refused

    def produce(store: Store, folder: Path) -> Path:
        configuration, budget, choice = _configuration(args), _budget(args), _acquisition(args)
        worklist = narrowed(store, load_worklist(store, configuration, budget, model_set=_model_set(args)), choice)
        suffix = "" if choice is None else f"_{safe_name(choice[1])}"
        return write_worklist(worklist, folder / f"worklist_{safe_name(configuration)}{suffix}.{fmt}", fmt,
                              group=None if choice is None else f"{stratum_label(choice[0])}: {choice[1]}")

    group = f" · {args.get('stratum')}: {args.get('group')}" if args.get("group") else ""
    return _send(f"worklist_{fmt}", f"{args.get('configuration')} @ {args.get('kind')}={args.get('value')}{group}",
                 produce)


def regions_zip(case: str) -> Any:
    """``/export/regions/<case>.zip``: the case's region label map and entropy map as NIfTI, zipped."""
    args = flask.request.args
    if (refused := _blind(case, "the regions and entropy export")) is not None:
        return refused

    def produce(store: Store, folder: Path) -> Path:
        configuration, budget = _configuration(args), _budget(args)
        labels, entropy = _read(store, lambda session: export_region_maps(
            session, store.maps.artifacts, case, configuration, budget, folder, settings().review, _model_set(args)))
        archive = folder / f"{safe_name(case)}_{safe_name(configuration)}_review.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as bundle:
            for member in (labels, entropy):
                bundle.write(member, member.name)
        return archive

    return _send("regions_nifti", f"{case}/{args.get('configuration')} @ {args.get('kind')}={args.get('value')}",
                 produce)


def rtstruct_file(case: str) -> Any:
    """``/export/rtstruct/<case>.dcm``: the case's review regions as an RTSTRUCT on its original DICOM series."""
    args = flask.request.args
    generated = args.get("allow_generated_uids") in ("1", "true", "yes")
    if (refused := _blind(case, "the regions export (RTSTRUCT)")) is not None:
        return refused

    def produce(store: Store, folder: Path) -> Path:
        configuration, budget = _configuration(args), _budget(args)
        out = folder / f"{safe_name(case)}_{safe_name(configuration)}_rtstruct.dcm"
        return _read(store, lambda session: export_case_rtstruct(
            session, store.maps.artifacts, case, configuration, budget, out, generated, settings().review,
            _model_set(args)))

    return _send("rtstruct", f"{case}/{args.get('configuration')} @ {args.get('kind')}={args.get('value')}", produce)


def report_file() -> Any:
    """``/export/report.pdf?configuration=&kind=&value=[&protocol=ID&repeat=R…&start=&end=&reference=KIND]``: the
    audit report (cohort table, curves, reliability, worklist, decisions, sign-off); its cohort numbers are the cohort
    page's for those filters (without ``protocol``: the newest protocol of the configuration's model set)."""
    args = flask.request.args
    if (refused := _blind(None, "the audit report (it holds the worklist)")) is not None:
        return refused

    def produce(store: Store, folder: Path) -> Path:
        configuration, budget, chosen = _configuration(args), _budget(args), _cohort_filter(args)
        if chosen is None and any(args.get(key) for key in ("repeat", "start", "end", "reference")):
            raise BadRequest("repeat, start, end and reference filter a protocol: add ?protocol=ID")
        address = store.engine.url.render_as_string(hide_password=True)
        content = _read(store, lambda session: gather_report(
            session, store.maps.artifacts, address, configuration, budget, settings().review, _model_set(args),
            chosen))
        return write_report(content, folder / f"audit_report_{safe_name(configuration)}.pdf")

    return _send("audit_report", f"{args.get('configuration')} @ {args.get('kind')}={args.get('value')}", produce)


def audit_csv() -> Any:
    """``/export/audit.csv?actor=&action=&outcome=&since=&until=``: the filtered audit log (approver or admin)."""
    args = flask.request.args

    def produce(store: Store, folder: Path) -> Path:
        user = auth.current_user()
        assert user is not None
        filters = audit_filters(args)
        records = auth.review_service(store.engine).audit_entries(int(user["user_id"]), limit=100_000, **filters)
        return write_audit_csv(records, folder / "audit_log.csv")

    return _send("audit_csv", "audit log " + "&".join(f"{k}={v}" for k, v in sorted(args.items())), produce,
                 also=Action.VIEW_AUDIT)


def _whole(raw: str | None, key: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > MAX_DIGITS:
        raise BadRequest(f"{key}={raw[:40]!r} must be a whole number")
    return int(raw)


def _cohort_filter(args: Any) -> CohortFilter | None:
    """The cohort page's filters from an address (``protocol=ID&repeat=R…&start=&end=&reference=KIND&stratum=KEY&
    group=NAME``); None without a protocol."""
    repeats = args.getlist("repeat")
    if len(repeats) > MAX_VALUES:
        raise BadRequest(f"at most {MAX_VALUES} repeats")
    return cohort_filter(_whole(args.get("protocol"), "protocol"), [_whole(r, "repeat") for r in repeats],
                         args.get("start"), args.get("end"), reference_kind=args.get("reference"),
                         stratum_key=args.get("stratum"), group=args.get("group"))


def cohort_file() -> Any:
    """``/export/cohort.csv?protocol=ID&repeat=R…&start=&end=&reference=KIND&stratum=KEY&group=NAME&structure=S…``:
    the cohort calibration
    table as the page shows it with those filters (reviewer and above)."""
    if (refused := _blind(None, "the cohort export")) is not None:
        return refused
    args = flask.request.args

    def produce(store: Store, folder: Path) -> Path:
        structures = args.getlist("structure")
        if len(structures) > MAX_VALUES or any(len(s) > 200 for s in structures):
            raise BadRequest(f"at most {MAX_VALUES} structures (of at most 200 characters)")
        chosen = _cohort_filter(args)
        if chosen is None:
            raise BadRequest("the address needs ?protocol=ID")
        path = folder / f"cohort_calibration_{chosen.protocol_id}.csv"
        path.write_text(cohort_csv(load_rows(store, chosen, structures)), encoding="utf-8")
        return path

    object_id = "cohort " + "&".join(f"{k}={v}" for k, v in sorted(args.items(multi=True)))
    return _send("cohort_csv", object_id[:200], produce)


def cost_file() -> Any:
    """``/export/cost.csv?protocol=ID&repeat=R…&start=&end=&reference=KIND``: the comparison page's cost–benefit
    table with those filters (reviewer and above)."""
    if (refused := _blind(None, "the cost-benefit export")) is not None:
        return refused
    args = flask.request.args

    def produce(store: Store, folder: Path) -> Path:
        chosen = _cohort_filter(args)
        if chosen is None:
            raise BadRequest("the address needs ?protocol=ID")
        statistics = StatisticsSettings(correction=settings().multiple_comparisons)
        rows = _read(store, lambda session: cost_benefit_rows(session, chosen, statistics))
        path = folder / f"cost_benefit_{chosen.protocol_id}.csv"
        path.write_text(cost_benefit.table(rows).to_csv(index=False, float_format="%.6g"), encoding="utf-8")
        return path

    object_id = "cost " + "&".join(f"{k}={v}" for k, v in sorted(args.items(multi=True)))
    return _send("cost_csv", object_id[:200], produce)


def audit_filters(args: Any) -> dict[str, Any]:
    """The audit log's filters from an address or form: actor, action (a prefix), outcome, since and until (ISO
    dates or times, UTC); BadRequest for a malformed date."""
    filters: dict[str, Any] = {key: (args.get(key) or "").strip() or None for key in ("actor", "action", "outcome")}
    for key in ("since", "until"):
        raw = (args.get(key) or "").strip()
        try:
            filters[key] = datetime.fromisoformat(raw) if raw else None
        except ValueError:
            raise BadRequest(f"{key}={raw!r} is not an ISO date or time (e.g. 2026-11-29 or 2026-11-29T08:00)"
                             ) from None
        if filters[key] is not None and filters[key].tzinfo is None:
            filters[key] = filters[key].replace(tzinfo=UTC)
    return filters


def install(server: flask.Flask) -> None:
    """Add the export routes to the app's Flask server (the login guard already covers them)."""
    server.add_url_rule("/export/worklist.csv", "qa_export_worklist_csv", lambda: worklist_file("csv"))
    server.add_url_rule("/export/worklist.xlsx", "qa_export_worklist_xlsx", lambda: worklist_file("xlsx"))
    server.add_url_rule("/export/regions/<path:case>.zip", "qa_export_regions", regions_zip)
    server.add_url_rule("/export/rtstruct/<path:case>.dcm", "qa_export_rtstruct", rtstruct_file)
    server.add_url_rule("/export/report.pdf", "qa_export_report", report_file)
    server.add_url_rule("/export/audit.csv", "qa_export_audit", audit_csv)
    server.add_url_rule("/export/cohort.csv", "qa_export_cohort", cohort_file)
    server.add_url_rule("/export/cost.csv", "qa_export_cost", cost_file)
