"""``python -m pipeline protocol``: the repeated hold-out protocol and temperature fits, from the stored outputs.

Works on what the batch stored (no inference): the pooled probabilities of each uncalibrated configuration (float16,
renormalised on reading: relative error <= 1e-3) and the reference of every case of one cohort. For each of R seeded
patient-level splits it fits one temperature per TS configuration on the calibration cases and evaluates the TS
configurations on the test cases; then a deployed fit on every case of the cohort is applied to every processed
image of the model set (other cohorts and cases without reference included), which the nightly batch then uses.
Each deployment is a configuration change: one ``config.deploy_ts`` audit row per TS configuration, the replaced
temperature before and the new one after. A protocol with the same parameters replaces the earlier one. Everything
is written in one transaction.
"""

from __future__ import annotations

import getpass
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pipeline.batch.maps import map_artifacts, result_prefix
from pipeline.batch.outcomes import (
    Outcome,
    bin_rows,
    curve_rows,
    evaluate_configuration,
    result_row,
    structure_rows,
    value_rows,
)
from pipeline.batch.persist import ResultRows, write_results
from pipeline.batch.splits import repeated_holdout
from pipeline.errors import InputError, NotFoundError
from pipeline.metrics.review_budget import DEFAULT_FRACTION
from pipeline.metrics.settings import DEFAULT_SETTINGS, MetricSettings
from pipeline.metrics.suite import calibration_voxels
from pipeline.metrics.temperature import fit_temperature
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.review_schema import AuditEntry
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


@dataclass(frozen=True)
class ProtocolOptions:
    """The protocol's parameters (the spec fixes none; these are the project's defaults)."""

    cohort: str
    repeats: int = 5
    test_fraction: float = 0.5
    seed: int = 0
    budget: float = DEFAULT_FRACTION
    settings: MetricSettings = DEFAULT_SETTINGS


@dataclass(frozen=True)
class _Case:
    image: Image
    processing: Processing
    labels: NDArray[np.uint8] | None
    spacing: tuple[float, float, float]


class _Loader:
    """Stored probabilities and references, read once each."""

    def __init__(self, session: Session, store: ArtifactStore) -> None:
        self.session, self.store = session, store
        self._cache: dict[tuple[int, int], NDArray[np.float32]] = {}

    def probabilities(self, case: _Case, configuration: Configuration) -> NDArray[np.float32]:
        key = (case.processing.id, configuration.id)
        if key not in self._cache:
            path = self.session.scalar(select(Artifact.path).where(
                Artifact.processing_id == case.processing.id, Artifact.configuration_id == configuration.id,
                Artifact.kind == "probabilities"))
            if path is None:
                raise NotFoundError(f"{case.image.name}: no stored probabilities of {configuration.name}; "
                                    "rerun the batch")
            stored = self.store.read(path).astype(np.float32)
            stored /= stored.sum(axis=0, keepdims=True)
            self._cache[key] = stored
        return self._cache[key]


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


def _twins(configurations: Sequence[Configuration]) -> dict[str, Configuration]:
    """Each TS configuration's uncalibrated twin (same members and views)."""
    plain = {(tuple(c.members), str(c.views)): c for c in configurations if not c.temperature_scaling}
    return {c.name: plain[(tuple(c.members), str(c.views))] for c in configurations if c.temperature_scaling}


def _fit(loader: _Loader, cases: Sequence[_Case], twin: Configuration, settings: MetricSettings
         ) -> tuple[float, float, float, int]:
    pairs = [calibration_voxels(loader.probabilities(c, twin), c.labels, c.spacing, settings) for c in cases]
    scores = np.concatenate([p for p, _ in pairs], axis=1)
    labels = np.concatenate([g for _, g in pairs])
    fit = fit_temperature(scores, labels, settings)
    return fit.temperature, fit.nll_before, fit.nll_after, fit.n_voxels


def _evaluate(session: Session, loader: _Loader, case: _Case, configuration: Configuration, twin: Configuration,
              fit: TemperatureFit, model_set: ModelSet, options: ProtocolOptions) -> None:
    began = time.perf_counter()
    probabilities = loader.probabilities(case, twin)
    result = evaluate_configuration(probabilities, case.labels, case.spacing, options.settings, fit.temperature,
                                    options.budget)
    outcome = Outcome(configuration.name, fit.temperature, result, case.labels is not None,
                      time.perf_counter() - began)
    counts = np.bincount(case.labels.ravel(), minlength=len(model_set.labels)) if case.labels is not None else None
    prefix = result_prefix(case.image.name, model_set.identity, configuration.name, fit.id)
    rows = ResultRows(configuration.id, fit.id, result_row(outcome), value_rows(outcome),
                      structure_rows(outcome, tuple(model_set.labels), counts), curve_rows(outcome), bin_rows(outcome),
                      map_artifacts(loader.store, prefix, outcome))
    write_results(session, case.image, case.processing.id, [rows])


def run_protocol(session: Session, store: ArtifactStore, model_set: ModelSet, options: ProtocolOptions) -> Protocol:
    """Splits, per-repeat fits and TS results, then the deployed fit (see the module's description)."""
    configurations = sorted(model_set.configurations, key=lambda c: c.position)
    twins = _twins(configurations)
    by_name = {c.name: c for c in configurations}
    loader = _Loader(session, store)
    cohort = _cases(session, store, model_set, options.cohort)
    if len(cohort) < 2:
        raise InputError(f"cohort {options.cohort!r} has {len(cohort)} processed cases with a reference; "
                         "the protocol needs at least 2 (run the batch first)")
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
            temperature, before, after, voxels = _fit(loader, calibration, twin, options.settings)
            fit = TemperatureFit(configuration_id=by_name[name].id, protocol_id=protocol.id, repeat=split.repeat,
                                 temperature=temperature, nll_before=before, nll_after=after, voxels=voxels,
                                 cases=list(split.calibration))
            session.add(fit)
            session.flush()
            for test in split.test:
                _evaluate(session, loader, named[test], by_name[name], twin, fit, model_set, options)
        log.info("repeat %d: %d calibration, %d test cases", split.repeat, len(split.calibration), len(split.test))
    _deploy(session, loader, model_set, cohort, twins, by_name, options)
    return protocol


def _deployment(fit: TemperatureFit) -> dict[str, object]:
    """What the audit log keeps of a deployed temperature (a configuration change of the TS configurations)."""
    return {"temperature": fit.temperature, "nll_before": fit.nll_before, "nll_after": fit.nll_after,
            "voxels": fit.voxels, "cases": len(fit.cases or [])}


def _deploy(session: Session, loader: _Loader, model_set: ModelSet, cohort: Sequence[_Case],
            twins: dict[str, Configuration], by_name: dict[str, Configuration], options: ProtocolOptions) -> None:
    """Fit on the whole cohort; replace earlier deployed fits; TS results for every processed image. The audit rows
    of the changes are added last: writing one takes the audit log's lock until the transaction ends."""
    everything = _cases(session, loader.store, model_set, None)
    changes = []
    for name, twin in twins.items():
        replaced = session.scalar(select(TemperatureFit).where(TemperatureFit.configuration_id == by_name[name].id,
                                                               TemperatureFit.protocol_id.is_(None)))
        old = _deployment(replaced) if replaced is not None else None
        session.execute(delete(TemperatureFit).where(TemperatureFit.configuration_id == by_name[name].id,
                                                     TemperatureFit.protocol_id.is_(None)))
        temperature, before, after, voxels = _fit(loader, cohort, twin, options.settings)
        fit = TemperatureFit(configuration_id=by_name[name].id, protocol_id=None, repeat=None,
                             temperature=temperature, nll_before=before, nll_after=after, voxels=voxels,
                             cases=[c.image.name for c in cohort])
        session.add(fit)
        session.flush()
        changes.append(AuditEntry(at=utcnow(), actor_id=None, actor=f"cli:{getpass.getuser()}"[:100],
                                  action="config.deploy_ts", outcome="ok", object_type="configuration",
                                  object_id=f"{model_set.name}/{name}"[:200], before=old, after=_deployment(fit)))
        log.info("deployed %s: T = %.3f (NLL %.4f -> %.4f on %d voxels)", name, temperature, before, after, voxels)
        for case in everything:
            _evaluate(session, loader, case, by_name[name], twin, fit, model_set, options)
    session.add_all(changes)

