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
transaction, by this process only.

The fits and TS results come from independent pieces (:mod:`pipeline.batch.protocol_pieces`, :func:`plan_pieces`):
one per repeat and TS configuration, one per TS configuration's deployment. They run one after another in this
process, or as tasks on a Dask cluster (``protocol --cluster``, :class:`pipeline.batch.cluster.DaskPieces`) with the
same stored values; their fits are inserted between their two steps, and what replaces earlier rows (the earlier
protocol, the earlier deployed fits and their results) is deleted after the tasks, so a SQLite store's readers (the
tasks) are never shut out by this transaction's deletions.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pipeline.batch.member_passes import check_mode
from pipeline.batch.persist import write_results
from pipeline.batch.protocol_pieces import (
    FitPlan,
    InProcessPieces,
    Piece,
    PieceReader,
    PieceRunner,
    PieceSource,
    detached,
    detached_fit,
    stored_cases,
)
from pipeline.batch.splits import Split, repeated_holdout
from pipeline.batch.stored_maps import StoredMaps
from pipeline.batch.temperature_fits import StoredCase, Target, fit_targets
from pipeline.errors import InputError
from pipeline.metrics.review_budget import DEFAULT_FRACTION
from pipeline.metrics.settings import DEFAULT_SETTINGS, MetricSettings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.deployed import DEPLOYED_ROLES
from pipeline.store.ood import refresh_ood_scores
from pipeline.store.review_schema import AuditEntry
from pipeline.store.run_settings import processing_settings
from pipeline.store.schema import ModelSet, Protocol, SplitRole, TemperatureFit, utcnow

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


def run_protocol(session: Session, store: ArtifactStore, model_set: ModelSet, options: ProtocolOptions,
                 runner: PieceRunner | None = None) -> Protocol:
    """Splits, per-repeat fits and TS results, then the deployed fits (see the module's description); the pieces run
    on ``runner`` (None: one after another in this process)."""
    cohort = stored_cases(session, store, model_set.id, options.cohort)
    if len(cohort) < 2:
        raise InputError(f"cohort {options.cohort!r} has {len(cohort)} processed cases with a reference; "
                         "the protocol needs at least 2 (run the batch first)")
    loader = StoredMaps(session, store, _cohort_settings(session, cohort, options.cohort))
    targets = fit_targets(session, sorted(model_set.configurations, key=lambda c: c.position), loader.settings)
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
    everything = stored_cases(session, store, model_set.id)
    source = PieceSource(session.get_bind().url.render_as_string(hide_password=False), store.root, loader.settings,
                         options.budget, model_set.id, model_set.identity, tuple(model_set.labels))
    pieces = plan_pieces(source, splits, targets, cohort, everything, options.seed)
    runner = runner or InProcessPieces(PieceReader.of(loader, everything))
    fits = _insert_fits(session, protocol, pieces, runner.fits(pieces), loader.settings)
    cases = {c.image.name: c for c in everything}
    for found in runner.results(pieces, [[detached_fit(f) for f in group] for group in fits]):
        for name, rows in found:
            write_results(session, cases[name].image, cases[name].processing.id, [rows])
    for split in splits:
        log.info("repeat %d: %d calibration, %d test cases", split.repeat, len(split.calibration), len(split.test))
    session.execute(delete(Protocol).where(
        Protocol.model_set_id == model_set.id, Protocol.cohort == options.cohort, Protocol.seed == options.seed,
        Protocol.repeats == options.repeats, Protocol.test_fraction == options.test_fraction,
        Protocol.id != protocol.id))
    _deploy(session, model_set, [(p, f) for p, f in zip(pieces, fits, strict=True) if p.repeat is None])
    refresh_ood_scores(session, model_set.id, loader.settings)
    return protocol


def plan_pieces(source: PieceSource, splits: Sequence[Split], targets: Sequence[Target],
                cohort: Sequence[StoredCase], everything: Sequence[StoredCase], seed: int) -> list[Piece]:
    """One piece per repeat and TS configuration (fitted on the repeat's calibration cases, applied to its test
    cases), then one per TS configuration for the deployment (fitted on the cohort and its cross-fits, applied to
    every processed image): the order their rows are written in."""
    return [*(_repeat_piece(source, split, target) for split in splits for target in targets),
            *(_deployed_piece(source, cohort, everything, target, seed) for target in targets)]


def _repeat_piece(source: PieceSource, split: Split, target: Target) -> Piece:
    configuration, twin, granularity = target
    plan = FitPlan("repeat", tuple(split.calibration), tuple(split.calibration))
    return Piece(source, split.repeat, detached(configuration), detached(twin), granularity, plan.cases, (plan,),
                 tuple(split.test))


def _deployed_piece(source: PieceSource, cohort: Sequence[StoredCase], everything: Sequence[StoredCase],
                    target: Target, seed: int) -> Piece:
    """The whole-cohort fit and one cross-fit per fold (the cohort minus the fold), applied to every processed
    image of the model set."""
    configuration, twin, granularity = target
    order = tuple(c.image.name for c in cohort)
    members = tuple(sorted(order))
    plans = [FitPlan("deployed", members, order)]
    for fold in crossfit_folds(members, seed):
        rest = tuple(n for n in members if n not in fold)
        plans.append(FitPlan("crossfit", rest, rest))
    return Piece(source, None, detached(configuration), detached(twin), granularity, order, tuple(plans),
                 tuple(c.image.name for c in everything))


def _insert_fits(session: Session, protocol: Protocol, pieces: Sequence[Piece],
                 columns: Sequence[Sequence[dict[str, object]]], settings: MetricSettings
                 ) -> list[list[TemperatureFit]]:
    """The pieces' fits as rows (a repeat's with the protocol; the deployed ones with none), in the pieces' order."""
    fits = []
    for piece, found in zip(pieces, columns, strict=True):
        rows = [TemperatureFit(configuration_id=piece.configuration.id,
                               protocol_id=protocol.id if piece.repeat is not None else None, repeat=piece.repeat,
                               cases=list(plan.cases), role=plan.role, temperature_mode=settings.temperature_mode,
                               **fitted) for plan, fitted in zip(piece.fits, found, strict=True)]
        session.add_all(rows)
        session.flush()
        fits.append(rows)
    return fits


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


def _deploy(session: Session, model_set: ModelSet, deployed: Sequence[tuple[Piece, list[TemperatureFit]]]) -> None:
    """The new deployed fits replace the earlier ones (whose results go with them). The audit rows of the changes
    are added last: writing one takes the audit log's lock until the transaction ends."""
    changes = []
    for piece, (fit, *crossfits) in deployed:
        configuration = piece.configuration
        earlier = (TemperatureFit.configuration_id == configuration.id, TemperatureFit.role.in_(DEPLOYED_ROLES),
                   TemperatureFit.id.not_in([fit.id, *(f.id for f in crossfits)]))
        replaced = session.scalar(select(TemperatureFit).where(*earlier, TemperatureFit.role == "deployed"))
        old = _deployment(replaced) if replaced is not None else None
        session.execute(delete(TemperatureFit).where(*earlier))
        after = _deployment(fit) | {"crossfit": [round(f.temperature, 6) for f in crossfits]}
        changes.append(AuditEntry(at=utcnow(), actor_id=None, actor=f"cli:{getpass.getuser()}"[:100],
                                  action="config.deploy_ts", outcome="ok", object_type="configuration",
                                  object_id=f"{model_set.name}/{configuration.name}"[:200], before=old, after=after))
        log.info("deployed %s: T = %.3f (NLL %.4f -> %.4f on %d voxels); %d cross-fits for the cohort: %s",
                 configuration.name, fit.temperature, fit.nll_before, fit.nll_after, fit.voxels, len(crossfits),
                 ", ".join(f"{f.temperature:.3f}" for f in crossfits))
    session.add_all(changes)
