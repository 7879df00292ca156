"""``python -m pipeline protocol``: the repeated hold-out protocol and temperature fits, from the stored outputs.

Works on what the batch stored (no inference, :mod:`pipeline.batch.stored_maps`): the pooled probabilities of each
uncalibrated configuration and the reference of every case of one cohort, with the metric settings the batch stored
with its runs (the cohort's cases must share them). Under ``temperature_mode`` ``per_member`` the temperature scales
each member before pooling: it is fitted on, and its TS results are evaluated on, the map rebuilt from the member
passes the batch stored (:mod:`pipeline.batch.member_passes`), with the ROI of the uncalibrated twin's map held fixed
while T varies.

For each of R seeded patient-level splits it fits one temperature per TS configuration on the calibration cases and
evaluates the TS configurations on the test cases. Then the deployment,
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
from numpy.typing import NDArray
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pipeline.batch.maps import map_artifacts, result_prefix, result_regions
from pipeline.batch.member_passes import check_mode, member_logits
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
from pipeline.errors import InputError
from pipeline.metrics.review_budget import DEFAULT_FRACTION
from pipeline.metrics.settings import DEFAULT_SETTINGS, MetricSettings
from pipeline.metrics.suite import calibration_roi
from pipeline.metrics.temperature import fit_temperature
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.configurations import twin_of
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


@dataclass(frozen=True)
class _Case:
    image: Image
    processing: Processing
    labels: NDArray[np.uint8] | None
    spacing: tuple[float, float, float]


def _cases(session: Session, store: ArtifactStore, model_set: ModelSet, cohort: str | None) -> list[_Case]:
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
        cases.append(_Case(image, processing, labels, (float(z), float(y), float(x))))
    return cases


def _cohort_settings(session: Session, cohort: Sequence[_Case], name: str) -> MetricSettings:
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


def _twins(configurations: Sequence[Configuration]) -> dict[str, Configuration]:
    """Each TS configuration's uncalibrated twin (same members and views)."""
    return {c.name: twin_of(c, configurations) for c in configurations if c.temperature_scaling}


def _fit(loader: StoredMaps, cases: Sequence[_Case], configuration: Configuration, twin: Configuration
         ) -> tuple[float, float, float, int]:
    """T on the calibration ROI voxels (the twin's ROI): of the twin's pooled map, or of the member passes."""
    settings, scores, labels = loader.settings, [], []
    for case in cases:
        assert case.labels is not None
        probabilities = loader.probabilities(case.processing.id, case.image.name, twin)
        flat = calibration_roi(probabilities, case.labels, case.spacing, settings)
        labels.append(case.labels.reshape(-1)[flat])
        if settings.temperature_mode == "per_member":
            passes = loader.passes(case.processing.id, case.image.name, configuration)
            scores.append(member_logits(loader.store, passes, flat))
        else:
            scores.append(probabilities.reshape(probabilities.shape[0], -1)[:, flat])
    fit = fit_temperature(np.concatenate(scores, axis=-1), np.concatenate(labels), settings)
    return fit.temperature, fit.nll_before, fit.nll_after, fit.n_voxels


def _evaluate(session: Session, loader: StoredMaps, case: _Case, configuration: Configuration, twin: Configuration,
              fit: TemperatureFit, model_set: ModelSet, options: ProtocolOptions) -> None:
    began = time.perf_counter()
    probabilities, temperature = loader.scored(case.processing.id, case.image.name, configuration, twin,
                                                 fit.temperature)
    result = evaluate_configuration(probabilities, case.labels, case.spacing, loader.settings, temperature,
                                    options.budget)
    outcome = Outcome(configuration.name, fit.temperature, result, case.labels is not None,
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
    configurations = sorted(model_set.configurations, key=lambda c: c.position)
    twins = _twins(configurations)
    by_name = {c.name: c for c in configurations}
    cohort = _cases(session, store, model_set, options.cohort)
    if len(cohort) < 2:
        raise InputError(f"cohort {options.cohort!r} has {len(cohort)} processed cases with a reference; "
                         "the protocol needs at least 2 (run the batch first)")
    loader = StoredMaps(session, store, _cohort_settings(session, cohort, options.cohort))
    session.execute(delete(Protocol).where(
        Protocol.model_set_id == model_set.id, Protocol.cohort == options.cohort, Protocol.seed == options.seed,
        Protocol.repeats == options.repeats, Protocol.test_fraction == options.test_fraction))
    protocol = Protocol(model_set_id=model_set.id, cohort=options.cohort, seed=options.seed, repeats=options.repeats,
                        test_fraction=options.test_fraction, calibration_fraction=None)
    session.add(protocol)
    session.flush()
    named = {c.image.name: c for c in cohort}
    try:
        splits = repeated_holdout(sorted(named), options.repeats, test_fraction=options.test_fraction,
                                  seed=options.seed, with_development=False)
    except ValueError as error:
        raise InputError(f"cohort {options.cohort!r}: {error}") from error
    for split in splits:
        session.add_all(SplitRole(protocol_id=protocol.id, repeat=split.repeat, image_id=named[n].image.id,
                                  role=split.role(n)) for n in sorted(named))
        for name, twin in twins.items():
            calibration = [named[n] for n in split.calibration]
            temperature, before, after, voxels = _fit(loader, calibration, by_name[name], twin)
            fit = TemperatureFit(configuration_id=by_name[name].id, protocol_id=protocol.id, repeat=split.repeat,
                                 temperature=temperature, nll_before=before, nll_after=after, voxels=voxels,
                                 cases=list(split.calibration), role="repeat",
                                 temperature_mode=loader.settings.temperature_mode)
            session.add(fit)
            session.flush()
            for test in split.test:
                _evaluate(session, loader, named[test], by_name[name], twin, fit, model_set, options)
        log.info("repeat %d: %d calibration, %d test cases", split.repeat, len(split.calibration), len(split.test))
    _deploy(session, loader, model_set, cohort, twins, by_name, options)
    refresh_ood_scores(session, model_set.id, loader.settings)
    return protocol


def _deployment(fit: TemperatureFit) -> dict[str, object]:
    """What the audit log keeps of a deployed temperature (a configuration change of the TS configurations)."""
    return {"temperature": fit.temperature, "nll_before": fit.nll_before, "nll_after": fit.nll_after,
            "voxels": fit.voxels, "cases": len(fit.cases or [])}


def crossfit_folds(names: Sequence[str], seed: int, most: int = CROSSFIT_FOLDS) -> list[tuple[str, ...]]:
    """The cohort's cases in K = min(``most``, n) seeded folds of near-equal size (sorted within each fold)."""
    order = [sorted(names)[i] for i in np.random.default_rng(seed).permutation(len(names))]
    count = min(most, len(order))
    return [tuple(sorted(order[k::count])) for k in range(count)]


def _new_fit(session: Session, loader: StoredMaps, cases: Sequence[_Case], configuration: Configuration,
             twin: Configuration, role: str) -> TemperatureFit:
    temperature, before, after, voxels = _fit(loader, cases, configuration, twin)
    fit = TemperatureFit(configuration_id=configuration.id, protocol_id=None, repeat=None, temperature=temperature,
                         nll_before=before, nll_after=after, voxels=voxels, cases=[c.image.name for c in cases],
                         role=role, temperature_mode=loader.settings.temperature_mode)
    session.add(fit)
    session.flush()
    return fit


def _deploy(session: Session, loader: StoredMaps, model_set: ModelSet, cohort: Sequence[_Case],
            twins: dict[str, Configuration], by_name: dict[str, Configuration], options: ProtocolOptions) -> None:
    """Replace the deployed fits: the whole-cohort fit for the other images, cross-fits for the cohort's own. The
    audit rows of the changes are added last: writing one takes the audit log's lock until the transaction ends."""
    everything = _cases(session, loader.store, model_set, None)
    members = {c.image.name for c in cohort}
    folds = crossfit_folds(sorted(members), options.seed)
    changes = []
    for name, twin in twins.items():
        configuration = by_name[name]
        deployed = (TemperatureFit.configuration_id == configuration.id, TemperatureFit.role.in_(DEPLOYED_ROLES))
        replaced = session.scalar(select(TemperatureFit).where(*deployed, TemperatureFit.role == "deployed"))
        old = _deployment(replaced) if replaced is not None else None
        session.execute(delete(TemperatureFit).where(*deployed))
        fit = _new_fit(session, loader, cohort, configuration, twin, "deployed")
        crossfits = [_new_fit(session, loader, [c for c in cohort if c.image.name not in fold], configuration, twin,
                              "crossfit") for fold in folds]
        after = _deployment(fit) | {"crossfit": [round(f.temperature, 6) for f in crossfits]}
        changes.append(AuditEntry(at=utcnow(), actor_id=None, actor=f"cli:{getpass.getuser()}"[:100],
                                  action="config.deploy_ts", outcome="ok", object_type="configuration",
                                  object_id=f"{model_set.name}/{name}"[:200], before=old, after=after))
        log.info("deployed %s: T = %.3f (NLL %.4f -> %.4f on %d voxels); %d cross-fits for the cohort: %s", name,
                 fit.temperature, fit.nll_before, fit.nll_after, fit.voxels, len(crossfits),
                 ", ".join(f"{f.temperature:.3f}" for f in crossfits))
        for case in everything:
            chosen = fit_for(case.image.name, [fit, *crossfits])
            assert chosen is not None and case.image.name not in chosen.cases  # a fold's cross-fit excludes it
            _evaluate(session, loader, case, configuration, twin, chosen, model_set, options)
    session.add_all(changes)

