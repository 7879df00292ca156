"""The demo on the embedded default: the committed demo models on a phantom cohort and a real CT, into the store.

1. Migrates the store (``QA_DATABASE_URL``, default SQLite ``var/qa.sqlite3``) to head.
2. Writes held-out phantoms (seeds 9000, 9001, …; never trained on) as a cohort folder under the work folder, the
   last ones (:data:`SECOND_SCANNER_CASES`) made on the second simulated scanner (:mod:`pipeline.phantoms.scanners`),
   with a manifest whose acquisition columns (manufacturer, model, kernel, slice thickness, kVp, contrast) the batch
   stores per image.
3. Runs the nightly batch on them (every (member, TTA view) pass once per case; all uncalibrated configurations),
   with the sweep's sub-configurations (``run --sweep``; ``demo --no-sweep`` leaves them out).
4. Runs the repeated hold-out protocol (R seeded 50/50 calibration/test splits): one temperature per TS
   configuration and repeat, TS results on each repeat's test cases, then a deployed fit on the whole cohort; with
   the demo's metric settings also the class-wise and per-scanner temperatures (``X+TS/class``, ``X+TS/scanner``).
5. Runs the batch on the real abdominal CT of ``shared/data/totalsegmentator`` (reference: TotalSegmentator's
   spleen PREDICTION, not an expert contour; no lymph-node reference, so every predicted node voxel counts as an
   error there), with every configuration including the deployed TS.
6. Prints the cohort table (mean ± SD over repeats), the cost–benefit table of the phantoms' test cases
   (:mod:`pipeline.metrics.cost_benefit`), the real CT's rows, and each configuration's stored
   out-of-distribution score of the real CT (mean entropy over the body, ranked against its own values on the
   calibration phantoms: :mod:`pipeline.store.ood`); the dashboard then shows them all.
7. Seeds a small **simulated** review study on the phantoms (:mod:`pipeline.demo_study`: scripted readers drawn from
   a documented model with made-up parameters; ``demo --no-study`` leaves it out) and prints where to see it.
A second run finds every case unchanged and only reprints (the protocol is refitted: it is cheap and seeded; the
simulated study, already there, is left as it is).
"""

from __future__ import annotations

import csv
import logging
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from alembic import command
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from pipeline.batch.cases import CaseSpec, discover
from pipeline.batch.protocol_stage import ProtocolOptions, run_protocol
from pipeline.batch.runner import BatchOptions, RunSummary, print_summary, run_batch
from pipeline.demo_study import StudyPlan, seed_simulated_study, study_line
from pipeline.errors import InputError
from pipeline.inference.model_set import load_model_set_file
from pipeline.io.acquisition import KEYS, Acquisition
from pipeline.metrics import registry
from pipeline.metrics.cohort import summarise_repeats
from pipeline.metrics.cost_benefit import shown_table, verdict
from pipeline.metrics.settings import DEFAULT_SETTINGS, TEMPERATURE_GRANULARITIES
from pipeline.phantoms.ct import LABELS, SPLEEN, generate_phantom
from pipeline.phantoms.scanners import DEFAULT_SCANNER, SCANNER_B, Scanner
from pipeline.settings import REPO_ROOT, Settings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.cohort_cost import cost_benefit_rows
from pipeline.store.cohort_numbers import CohortFilter
from pipeline.store.cohort_rows import (
    deployed_case_rows,
    deployed_ood_rows,
    latest_protocol,
    protocol_case_rows,
)
from pipeline.store.cohort_strata import stratified
from pipeline.store.database import alembic_config, make_engine, refresh_statistics, session_factory
from pipeline.store.deployed import deployed_result
from pipeline.store.schema import CaseResult, Configuration, Image, ModelSet, StructureResult, TemperatureFit
from pipeline.store.strata import SCANNER

log = logging.getLogger(__name__)


DEMO_MODELS = REPO_ROOT / "models" / "demo" / "manifest.json"
FIRST_SEED = 9000
DEMO_CASES = 10
SECOND_SCANNER_CASES = 4  # the demo cohort's last phantoms are made on scanner B (per-scanner tables, temperatures)
NIGHT_SEEDS = range(9100, 9102)
DEMO_METRICS = replace(DEFAULT_SETTINGS, temperature_granularities=TEMPERATURE_GRANULARITIES)
"""The spec's defaults, and every temperature granularity fitted by the protocol (docs/metrics.md)."""
REAL_CT = ("totalsegmentator/example_ct_sm.nii.gz", "totalsegmentator/example_seg.nii.gz")
TOTALSEGMENTATOR_SPLEEN = 1
REAL_NOTE = "TotalSegmentator model prediction (spleen only), not an expert contour; no lymph-node reference"
DEMO_USERS = (("demo-admin", "admin"), ("demo-reviewer", "reviewer"), ("demo-approver", "approver"))


def write_phantom_cohort(folder: Path, seeds: range, references: str = "references",
                         scanners: Mapping[int, Scanner] | None = None) -> Path:
    """Phantom CTs and their observer references as NIfTI under ``folder/images`` and ``folder/<references>``, and
    ``folder/manifest.csv``: one row per case with its CT, its reference (only under ``references``) and its
    scanner's acquisition columns (:data:`pipeline.io.acquisition.KEYS`). ``scanners`` maps a seed to the simulated
    scanner it is made on (default A).

    The demo's night (README, "A night in the clinic") puts the references under ``final_contours``: the batch finds
    no reference there, so the cases arrive unreferenced and their contours are attached later."""
    for sub in ("images", references):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in seeds:
        phantom = generate_phantom(seed, scanner=(scanners or {}).get(seed, DEFAULT_SCANNER))
        name = f"phantom_{seed}"
        for array, sub in ((phantom.ct, "images"), (phantom.labels, references)):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing(tuple(reversed(phantom.spacing)))
            sitk.WriteImage(image, str(folder / sub / f"{name}.nii.gz"), useCompression=True)
        acquisition = Acquisition.of(phantom.acquisition()).record() or {}
        rows.append({"case": name, "ct": f"images/{name}.nii.gz",
                     "reference": f"references/{name}.nii.gz" if references == "references" else "",
                     **{key: str(acquisition.get(key, "")) for key in KEYS}})
    with (folder / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case", "ct", "reference", *KEYS])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def demo_scanners(seeds: range) -> dict[int, Scanner]:
    """The demo cohort's scanners: its last :data:`SECOND_SCANNER_CASES` seeds (at most half of them) on scanner B,
    the rest on A."""
    count = min(SECOND_SCANNER_CASES, len(seeds) // 2)
    second = set(seeds[len(seeds) - count:])
    return {seed: SCANNER_B if seed in second else DEFAULT_SCANNER for seed in seeds}


def real_ct_case(folder: Path, shared: Path) -> CaseSpec | None:
    """The real CT of ``shared`` (the shared/data folder) with its spleen reference mapped to the model's label, or
    None when it is absent."""
    ct, segmentation = (shared / part for part in REAL_CT)
    if not ct.is_file() or not segmentation.is_file():
        log.warning("real CT skipped: %s not found (set QA_SHARED_DATA to the shared/data folder)", ct)
        return None
    source = sitk.ReadImage(str(segmentation))
    spleen = (sitk.GetArrayFromImage(source) == TOTALSEGMENTATOR_SPLEEN).astype(np.uint8) * SPLEEN
    reference = sitk.GetImageFromArray(spleen)
    reference.CopyInformation(source)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "example_ct_sm_spleen_totalsegmentator.nii.gz"
    sitk.WriteImage(reference, str(path), useCompression=True)
    return CaseSpec("real_ct_totalsegmentator", ct, path, patient="real-ct-1", cohort="real", reference_note=REAL_NOTE)


def _format(summary: pd.DataFrame, order: list[str]) -> str:
    shown = pd.DataFrame({"configuration": order})
    indexed = summary.set_index("configuration").loc[order]
    for metric in registry.summary_metrics():
        pairs = zip(indexed[f"{metric.name}_mean"], indexed[f"{metric.name}_sd"], strict=True)
        shown[metric.name] = [f"{metric.format(m)} ± {metric.format(s)}" for m, s in pairs]
    shown["n"] = indexed["n_cases"].to_numpy()
    return shown.to_string(index=False)


def _shift_report(session: Session, model_set_id: int, order: list[str]) -> list[str]:
    """Each configuration's stored out-of-distribution score of the real CT (:mod:`pipeline.store.ood`): its mean
    entropy over the body, the phantoms' range, and its rank among them."""
    scores = deployed_ood_rows(session, model_set_id, ("phantom", "real"))
    if "real" not in set(scores["cohort"]):
        return []
    rows = []
    for name in order:
        own = scores[scores["configuration"] == name]
        real, phantoms = own[own["cohort"] == "real"], own[own["cohort"] == "phantom"]["value"].dropna()
        if real.empty or real["value"].isna().all():
            continue
        scan = real.iloc[0]
        ranked = scan["percentile"] is not None and not pd.isna(scan["percentile"])
        rows.append({"configuration": name, "real_ct": f"{scan['value']:.3f}",
                     "phantoms": f"{phantoms.min():.3f}–{phantoms.max():.3f}" if not phantoms.empty else "—",
                     "percentile": f"{scan['percentile']:.0f}" if ranked else "—",
                     "n": int(scan["reference_n"]),
                     "flagged": ("yes" if scan["flagged"] else "no") if ranked else "not enough reference cases"})
    shown = DEFAULT_SETTINGS
    return [f"\nOut of distribution? Mean entropy over the body (CT > {shown.ood_body_hu:g} HU), the real CT ranked "
            f"against the same configuration on the calibration phantoms (flag at percentile >= "
            f"{shown.ood_flag_percentile:g}, at least {shown.ood_min_reference} reference cases; stored per result; "
            "TS rows: deployed temperatures):", pd.DataFrame(rows).to_string(index=False)]


def _scanner_report(session: Session, protocol_id: int) -> list[str]:
    """The per-scanner table of the protocol's test cases (:mod:`pipeline.store.cohort_strata`): n per scanner, the
    mean ROI ECE and its difference from the other scanners' cases with a case-bootstrap CI, flagged where it
    excludes 0."""
    frame = stratified(session, CohortFilter(protocol_id), SCANNER)
    if frame["group"].nunique() < 2:
        return []
    ece = registry.metric("ece")
    dsc = registry.metric("dsc_mean_fg")
    shown = pd.DataFrame({
        "configuration": frame["configuration"], "scanner": frame["group"], "n": frame["n_cases"],
        "DSC": frame[dsc.name].map(dsc.format), "ECE": frame[ece.name].map(ece.format),
        "ECE vs rest [95 % CI]": [f"{ece.format(d)} [{ece.format(lo)}, {ece.format(hi)}]" for d, lo, hi in
                                  zip(frame["ece_difference"], frame["ece_low"], frame["ece_high"], strict=True)],
        "differs": frame["differs"].map({True: "yes", False: "no"})})
    return ["\nPer scanner (test cases; each case's mean over the repeats it was tested in; CI: cases resampled "
            "within the scanner and within the rest):", shown.to_string(index=False)]


def _report(url: str, identity: str, repeats: int) -> str:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        model_set = session.scalars(select(ModelSet).where(ModelSet.identity == identity)).one()
        protocol = latest_protocol(session, "phantom")
        assert protocol is not None
        rows = protocol_case_rows(session, protocol)
        order = [c.name for c in sorted(model_set.configurations, key=lambda c: c.position)]
        summary = summarise_repeats(rows, registry.names(registry.summary_metrics()))
        text = [f"Phantom cohort, {repeats} repeats of a 50/50 calibration/test split (mean ± SD over repeats of the "
                f"per-repeat test means; n = test-case rows):", _format(summary, order)]
        text += _cost_report(session, protocol.id)
        real = deployed_case_rows(session, "real")
        if not real.empty:
            spleen = pd.DataFrame(session.execute(
                select(Configuration.name, StructureResult.dsc, StructureResult.predicted_ml)
                .join(CaseResult, CaseResult.id == StructureResult.result_id)
                .join(Configuration, Configuration.id == CaseResult.configuration_id)
                .join(Image, Image.id == CaseResult.image_id)
                .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
                .where(Image.cohort == "real", StructureResult.class_index == SPLEEN,
                       deployed_result())
            ).all(), columns=["configuration", "spleen_dsc", "spleen_ml"])
            shown_order = [name for name in order if name in set(real["configuration"])]  # the batch runs the grid
            real = real.merge(spleen, on="configuration").set_index("configuration").loc[shown_order].reset_index()
            text.append(f"\nReal CT (reference: {REAL_NOTE}); TS rows use the deployed temperatures:")
            # the summary, then the metrics that need no reference (its reference is not an expert contour)
            shown = [*registry.summary_metrics(),
                     *(m for m in registry.case_metrics() if not m.needs_reference and not m.in_summary)]
            digits = {"spleen_dsc": registry.metric("dsc").digits, "spleen_ml": 3} | {m.name: m.digits for m in shown}
            columns = ["configuration", "spleen_dsc", "spleen_ml", *(m.name for m in shown)]
            table = real[columns].round(digits)
            table[[c for c in columns if table[c].isna().all()]] = None  # no value in any row: printed None
            text.append(table.to_string(index=False))
        text += _scanner_report(session, protocol.id)
        text += _shift_report(session, model_set.id, order)
    engine.dispose()
    return "\n".join(text)


def _cost_report(session: Session, protocol_id: int) -> list[str]:
    """What each configuration costs and buys on the phantoms' test cases (the comparison page's cost–benefit view)."""
    rows = cost_benefit_rows(session, CohortFilter(protocol_id))
    return ["\nCost and benefit (phantom test cases; case-bootstrap 95 % CIs; seconds per case as if run alone; "
            "◆ Pareto front of seconds and UEO-AUC):", shown_table(rows).to_string(index=False), verdict(rows)]


def ensure_demo_users(engine: Engine, settings: Settings) -> str:
    """The demo's accounts (admin, reviewer, approver), created once through the audited review service with the
    settings' demo password."""
    from pipeline.review.service import CommandLine, ReviewService

    service = ReviewService(engine)
    password = settings.demo_password
    existing = {user.username for user in service.list_users(CommandLine())}
    for username, role in DEMO_USERS:
        if username not in existing:
            service.create_user(CommandLine(), username, password, role)
    users = ", ".join(f"{name} ({role})" for name, role in DEMO_USERS)
    shown = f"'{password}'" if settings.demo_password_is_default else "from QA_DEMO_PASSWORD"
    return f"Demo accounts: {users}; password {shown}."


def _batch(cases: list[CaseSpec], models: Path, settings: Settings, tta: bool, sweep: bool) -> RunSummary:
    options = BatchOptions(cases=tuple(cases), model_set=load_model_set_file(models), models_source=str(models),
                           database_url=settings.database_url, artifacts=settings.artifacts_dir, tta=tta,
                           sweep=sweep, progress=sys.stderr.isatty(), settings=DEMO_METRICS)
    summary = run_batch(options)
    sys.stdout.write(print_summary(summary, cases) + "\n")
    return summary


def run_demo(settings: Settings, workdir: Path, models: Path = DEMO_MODELS, cases: int = DEMO_CASES, repeats: int = 3,
             tta: bool = True, sweep: bool = True, study: bool = True) -> int:
    """The demo of the module's description into the store of ``settings``; the exit code is 1 when a case failed."""
    if not models.is_file():
        raise InputError(f"{models}: demo models missing (train them with `python -m pipeline train-demo-models`)")
    url = settings.database_url
    command.upgrade(alembic_config(url), "head")
    seeds = range(FIRST_SEED, FIRST_SEED + cases)
    cohort = write_phantom_cohort(workdir / "phantoms", seeds, scanners=demo_scanners(seeds))
    phantoms = _batch(discover(cohort / "manifest.csv", "phantom"), models, settings, tta, sweep)
    engine = make_engine(url)
    identity = load_model_set_file(models).identity()
    with session_factory(engine).begin() as session:
        model_set = session.scalars(select(ModelSet).where(ModelSet.identity == identity)).one()
        run_protocol(session, ArtifactStore(settings.artifacts_dir), model_set,
                     ProtocolOptions(cohort="phantom", repeats=repeats, test_fraction=0.5, seed=0))
    real = real_ct_case(workdir / "real", settings.shared_data)
    night = write_phantom_cohort(workdir / "night", NIGHT_SEEDS, references="final_contours")
    failed = bool(phantoms.failed)
    if real is not None:
        failed |= bool(_batch([real], models, settings, tta, sweep).failed)
    refresh_statistics(engine)
    accounts = ensure_demo_users(engine, settings)
    with session_factory(engine)() as session:
        stored = len(session.scalars(select(Image.id)).all())
    engine.dispose()
    report = _report(url, identity, repeats)
    sys.stdout.write(f"\n{report}\n\nStore: {url} ({stored} images), maps under "
                     f"{settings.artifacts_dir}. Labels: {dict(LABELS)}.\nDashboard: python app.py, then "
                     f"http://127.0.0.1:8050 (login required). {accounts}\nA night in the clinic (README): new "
                     f"patients without a reference in {night / 'images'}, their final contours in "
                     f"{night / 'final_contours'}.\n")
    if study:
        references = {f"phantom_{seed}": cohort / "references" / f"phantom_{seed}.nii.gz" for seed in seeds}
        seed_simulated_study(settings, StudyPlan(references))
        sys.stdout.write(study_line(settings) + "\n")
    return 1 if failed else 0
