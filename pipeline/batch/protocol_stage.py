"""``python -m pipeline protocol``: the repeated hold-out protocol and temperature fits, from the stored outputs.

Works on what the batch stored (no inference, :mod:`pipeline.batch.stored_maps`): the pooled probabilities of each
uncalibrated configuration and the reference of every case of one cohort, with the metric settings the batch stored
with its runs (the cohort's cases must share them). Under ``temperature_mode`` ``per_member`` the temperature scales
each member before pooling: it is fitted on, and its TS results are evaluated on, the map rebuilt from the member
passes the batch stored (:mod:`pipeline.batch.member_passes`), with the ROI of the uncalibrated twin's map held fixed
while T varies.

For each of R seeded patient-level splits it fits one temperature per TS configuration on the calibration cases and
evaluates the TS configurations on the test cases; with the settings' ``temperature_granularities``, also a class-wise
vector and per-scanner temperatures on the same calibration cases, evaluated on the same test cases as the
configurations ``X+TS/class`` and ``X+TS/scanner`` (:mod:`pipeline.store.temperatures`). Then the deployment,
out of sample everywhere: a fit on the whole cohort (role ``deployed``) is applied to every processed image of the
model set outside the cohort (other cohorts, cases without reference) and is what the nightly batch applies to new
cases; the cohort's own cases get their deployed TS results from cross-fits (role ``crossfit``: K = min(5, n) seeded
folds, each fitted on the cohort minus the fold and applied to the fold), so no temperature is ever applied to a case
it was fitted on (:mod:`pipeline.store.deployed`). Each deployment is a configuration change: one
``config.deploy_ts`` audit row per TS configuration, the replaced temperature before and the new one (with the
cross-fits') after. A protocol with the same parameters replaces the earlier one. Everything is written in one
transaction.
"""

from __future__ import annotations

import getpass
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pipeline.batch.maps import map_artifacts, result_prefix, result_regions
from pipeline.batch.member_passes import check_mode
from pipeline.batch.outcomes import (
    Outcome,
    bin_rows,
    body_entropy,
    curve_rows,
    evaluate_configuration,
    result_row,
    structure_rows,
    value_rows,
)
from pipeline.batch.persist import ResultRows, twin_cost, write_results
from pipeline.batch.splits import repeated_holdout
from pipeline.batch.stored_maps import StoredMaps
from pipeline.batch.temperature_fits import LastCalibration, StoredCase, Target, fit_columns, fit_targets
from pipeline.errors import InputError
from pipeline.metrics.review_budget import DEFAULT_FRACTION
from pipeline.metrics.settings import DEFAULT_SETTINGS, MetricSettings
from pipeline.metrics.temperature_groups import CalibrationCase
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.deployed import DEPLOYED_ROLES, fit_for
from pipeline.store.ood import refresh_ood_scores
from pipeline.store.review_schema import AuditEntry
from pipeline.store.run_settings import processing_settings
from pipeline.store.schema import (
    Artifact,
    Configuration,
    Image,
    ModelSet,
    Processing,
    Protocol,
    SplitRole,
    TemperatureFit,
    utcnow,
)
from pipeline.store.temperatures import applied_scaling, recorded_temperature

log = logging.getLogger(__name__)
CROSSFIT_FOLDS = 5  # the cohort's cases get their deployed TS results from K = min(5, n) cross-fits


@dataclass(frozen=True)
class ProtocolOptions:
    """The protocol's parameters (the spec fixes none; these are the project's defaults)."""

    cohort: str
    repeats: int = 5
    test_fraction: float = 0.5
    seed: int = 0
    budget: float = DEFAULT_FRACTION


def _cases(session: Session, store: ArtifactStore, model_set: ModelSet, cohort: str | None) -> list[StoredCase]:
    query = select(Image, Processing).join(Processing, Processing.image_id == Image.id).where(
        Processing.model_set_id == model_set.id)
    if cohort is not None:
        query = query.where(Image.cohort == cohort, Image.reference_hash.is_not(None))
    cases = []
    for image, processing in session.execute(query.order_by(Image.name)):
        labels = None
        if image.reference_hash is not None:
            path = session.scalar(select(Artifact.path).where(Artifact.image_id == image.id,
                                                              Artifact.kind == "reference"))
            labels = store.read(path).astype(np.uint8) if path else None
        x, y, z = image.spacing
        cases.append(StoredCase(image, processing, labels, (float(z), float(y), float(x))))
    return cases


def _cohort_settings(session: Session, cohort: Sequence[StoredCase], name: str) -> MetricSettings:
    """The metric settings the batch stored with the cohort's processings (one set; the defaults when none)."""
    found = {case.image.name: processing_settings(session, case.processing.id) for case in cohort}
    distinct = {repr(asdict(s)) if s is not None else "" for s in found.values()}
    if len(distinct) > 1:
        raise InputError(f"cohort {name!r} was processed with different metric settings; rerun the batch on it "
                         "with one --settings")
    settings = next(iter(found.values()))
    if settings is None:
        log.warning("cohort %r: its runs stored no metric settings; using the defaults", name)
        return DEFAULT_SETTINGS
    check_mode(settings, {})
    return settings


def _evaluate(session: Session, loader: StoredMaps, case: StoredCase, configuration: Configuration,
              twin: Configuration, fit: TemperatureFit, model_set: ModelSet, options: ProtocolOptions) -> None:
    began = time.perf_counter()
    scaling = applied_scaling(fit, case.image.acquisition)
    probabilities, temperature = loader.scored(case.processing.id, case.image.name, configuration, twin, scaling)
    result = evaluate_configuration(probabilities, case.labels, case.spacing, loader.settings, temperature,
                                    options.budget)
    outcome = Outcome(configuration.name, recorded_temperature(scaling), result, case.labels is not None,
                      time.perf_counter() - began, body_entropy(result, loader.body(case.image.id, case.image.name)))
    counts = np.bincount(case.labels.ravel(), minlength=len(model_set.labels)) if case.labels is not None else None
    prefix = result_prefix(case.image.name, model_set.identity, configuration.name, fit.id)
    cost = twin_cost(session, case.processing.id, twin.id)
    rows = ResultRows(configuration.id, fit.id, result_row(outcome) | cost, value_rows(outcome),
                      structure_rows(outcome, tuple(model_set.labels), counts), curve_rows(outcome), bin_rows(outcome),
                      map_artifacts(loader.store, prefix, outcome),
                      result_regions(outcome, case.spacing) if fit.role in DEPLOYED_ROLES else ())
    write_results(session, case.image, case.processing.id, [rows])


def run_protocol(session: Session, store: ArtifactStore, model_set: ModelSet, options: ProtocolOptions) -> Protocol:
    """Splits, per-repeat fits and TS results, then the deployed fit (see the module's description)."""
    cohort = _cases(session, store, model_set, options.cohort)
    if len(cohort) < 2:
        raise InputError(f"cohort {options.cohort!r} has {len(cohort)} processed cases with a reference; "
                         "the protocol needs at least 2 (run the batch first)")
    loader = StoredMaps(session, store, _cohort_settings(session, cohort, options.cohort))
    targets = fit_targets(session, sorted(model_set.configurations, key=lambda c: c.position), loader.settings)
    session.execute(delete(Protocol).where(
        Protocol.model_set_id == model_set.id, Protocol.cohort == options.cohort, Protocol.seed == options.seed,
        Protocol.repeats == options.repeats, Protocol.test_fraction == options.test_fraction))
    protocol = Protocol(model_set_id=model_set.id, cohort=options.cohort, seed=options.seed, repeats=options.repeats,
                        test_fraction=options.test_fraction, calibration_fraction=None)
    session.add(protocol)
    session.flush()
    named = {c.image.name: c for c in cohort}
    calibration = LastCalibration(loader)
    try:
        splits = repeated_holdout(sorted(named), options.repeats, test_fraction=options.test_fraction,
                                  seed=options.seed, with_development=False)
    except ValueError as error:
        raise InputError(f"cohort {options.cohort!r}: {error}") from error
    for split in splits:
        session.add_all(SplitRole(protocol_id=protocol.id, repeat=split.repeat, image_id=named[n].image.id,
                                  role=split.role(n)) for n in sorted(named))
        for configuration, twin, granularity in targets:
            found = calibration([named[n] for n in split.calibration], configuration, twin)
            fit = TemperatureFit(configuration_id=configuration.id, protocol_id=protocol.id, repeat=split.repeat,
                                 cases=list(split.calibration), role="repeat",
                                 temperature_mode=loader.settings.temperature_mode,
                                 **fit_columns(list(found.values()), granularity, loader.settings))
            session.add(fit)
            session.flush()
            for test in split.test:
                _evaluate(session, loader, named[test], configuration, twin, fit, model_set, options)
        log.info("repeat %d: %d calibration, %d test cases", split.repeat, len(split.calibration), len(split.test))
    _deploy(session, loader, model_set, cohort, targets, options)
    refresh_ood_scores(session, model_set.id, loader.settings)
    return protocol


def _deployment(fit: TemperatureFit) -> dict[str, object]:
    """What the audit log keeps of a deployed temperature (a configuration change of the TS configurations)."""
    kept = {"temperature": fit.temperature, "nll_before": fit.nll_before, "nll_after": fit.nll_after,
            "voxels": fit.voxels, "cases": len(fit.cases or [])}
    return kept if fit.granularity == "configuration" else kept | {"granularity": fit.granularity,
                                                                    "temperatures": fit.temperatures}


def crossfit_folds(names: Sequence[str], seed: int, most: int = CROSSFIT_FOLDS) -> list[tuple[str, ...]]:
    """The cohort's cases in K = min(``most``, n) seeded folds of near-equal size (sorted within each fold)."""
    order = [sorted(names)[i] for i in np.random.default_rng(seed).permutation(len(names))]
    count = min(most, len(order))
    return [tuple(sorted(order[k::count])) for k in range(count)]


def _new_fit(session: Session, loader: StoredMaps, cases: Sequence[CalibrationCase], names: Sequence[str],
             configuration: Configuration, granularity: str, role: str) -> TemperatureFit:
    fit = TemperatureFit(configuration_id=configuration.id, protocol_id=None, repeat=None, cases=list(names),
                         role=role, temperature_mode=loader.settings.temperature_mode,
                         **fit_columns(cases, granularity, loader.settings))
    session.add(fit)
    session.flush()
    return fit


def _deploy(session: Session, loader: StoredMaps, model_set: ModelSet, cohort: Sequence[StoredCase],
            targets: Sequence[Target], options: ProtocolOptions) -> None:
    """Replace the deployed fits: the whole-cohort fit for the other images, cross-fits for the cohort's own. The
    audit rows of the changes are added last: writing one takes the audit log's lock until the transaction ends."""
    everything = _cases(session, loader.store, model_set, None)
    members = sorted(c.image.name for c in cohort)
    folds = crossfit_folds(members, options.seed)
    changes = []
    calibration = LastCalibration(loader)
    for configuration, twin, granularity in targets:
        found = calibration(cohort, configuration, twin)
        deployed = (TemperatureFit.configuration_id == configuration.id, TemperatureFit.role.in_(DEPLOYED_ROLES))
        replaced = session.scalar(select(TemperatureFit).where(*deployed, TemperatureFit.role == "deployed"))
        old = _deployment(replaced) if replaced is not None else None
        session.execute(delete(TemperatureFit).where(*deployed))
        fit = _new_fit(session, loader, list(found.values()), members, configuration, granularity, "deployed")
        crossfits = []
        for fold in folds:
            rest = [n for n in members if n not in fold]
            crossfits.append(_new_fit(session, loader, [found[n] for n in rest], rest, configuration, granularity,
                                      "crossfit"))
        after = _deployment(fit) | {"crossfit": [round(f.temperature, 6) for f in crossfits]}
        changes.append(AuditEntry(at=utcnow(), actor_id=None, actor=f"cli:{getpass.getuser()}"[:100],
                                  action="config.deploy_ts", outcome="ok", object_type="configuration",
                                  object_id=f"{model_set.name}/{configuration.name}"[:200], before=old, after=after))
        log.info("deployed %s: T = %.3f (NLL %.4f -> %.4f on %d voxels); %d cross-fits for the cohort: %s",
                 configuration.name, fit.temperature, fit.nll_before, fit.nll_after, fit.voxels, len(crossfits),
                 ", ".join(f"{f.temperature:.3f}" for f in crossfits))
        for case in everything:
            chosen = fit_for(case.image.name, [fit, *crossfits])
            assert chosen is not None and case.image.name not in chosen.cases  # a fold's cross-fit excludes it
            _evaluate(session, loader, case, configuration, twin, chosen, model_set, options)
    session.add_all(changes)
