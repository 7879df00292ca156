"""The protocol stage's independent pieces: one TS configuration's fits of one repeat (or of the deployment: the
whole-cohort fit and its cross-fits) and the TS results of that piece's cases, from the stored maps.

A piece runs in two steps, each a pure-ish function of what is stored (the batch's probabilities, member passes and
references): :func:`fit_piece` gives the ``temperature_fits`` columns of the piece's fits; once the stage's process
(the only writer of rows) has inserted them, :func:`evaluate_piece` scores the piece's cases with them, writes their
maps to the artifact store and gives their result rows. The stage runs the pieces in its own process
(:class:`InProcessPieces`, one after another) or as tasks on a Dask cluster (:class:`pipeline.batch.cluster.DaskPieces`,
each task reading the store through its own session); both call these functions on the same pieces, so the stored
values are the same to the last bit.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol as Interface

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.batch.maps import map_artifacts, result_prefix, result_regions
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
from pipeline.batch.persist import ResultRows, twin_cost
from pipeline.batch.stored_maps import StoredMaps
from pipeline.batch.temperature_fits import LastCalibration, StoredCase, fit_columns
from pipeline.metrics.settings import MetricSettings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.deployed import DEPLOYED_ROLES, fit_for
from pipeline.store.schema import Artifact, Configuration, Image, Processing, TemperatureFit
from pipeline.store.temperatures import applied_scaling, recorded_temperature

CaseRows = tuple[str, ResultRows]  # a case's name and one TS result's rows


@dataclass(frozen=True)
class PieceSource:
    """What every piece of one protocol reads from and scores with (sent with every task)."""

    database_url: str
    artifacts: Path
    settings: MetricSettings
    budget: float
    model_set_id: int
    model_identity: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class FitPlan:
    """One fit of a piece: its role, the calibration cases its row records, and the order their voxels are pooled
    in (the deployed fit records the cohort sorted by name and pools it in the store's order)."""

    role: str
    cases: tuple[str, ...]
    pooled: tuple[str, ...]


@dataclass(frozen=True)
class Piece:
    """One TS configuration (with its uncalibrated twin and granularity) of one repeat (None: the deployment): the
    cases whose calibration voxels are read (in that order), its fits, and the cases given TS results."""

    source: PieceSource
    repeat: int | None
    configuration: Configuration
    twin: Configuration
    granularity: str
    calibration: tuple[str, ...]
    fits: tuple[FitPlan, ...]
    evaluated: tuple[str, ...]


def detached(configuration: Configuration) -> Configuration:
    """A configuration's columns that the pieces use, in a row outside any session (sent with the tasks)."""
    return Configuration(id=configuration.id, model_set_id=configuration.model_set_id, name=configuration.name,
                         position=configuration.position, members=list(configuration.members),
                         views=[list(v) for v in configuration.views],
                         temperature_scaling=configuration.temperature_scaling,
                         temperature_granularity=configuration.temperature_granularity)


def detached_fit(fit: TemperatureFit) -> TemperatureFit:
    """An inserted fit's columns (with its id) in a row outside any session (sent with the tasks)."""
    return TemperatureFit(id=fit.id, configuration_id=fit.configuration_id, protocol_id=fit.protocol_id,
                          repeat=fit.repeat, temperature=fit.temperature, nll_before=fit.nll_before,
                          nll_after=fit.nll_after, voxels=fit.voxels, cases=list(fit.cases), role=fit.role,
                          temperature_mode=fit.temperature_mode, granularity=fit.granularity,
                          temperatures=fit.temperatures)


def stored_cases(session: Session, store: ArtifactStore, model_set_id: int, cohort: str | None = None,
                 names: Collection[str] | None = None) -> list[StoredCase]:
    """The model set's processed images in name order, with their references: those of ``cohort`` with a reference
    (None: every one), or those named."""
    query = select(Image, Processing).join(Processing, Processing.image_id == Image.id).where(
        Processing.model_set_id == model_set_id)
    if cohort is not None:
        query = query.where(Image.cohort == cohort, Image.reference_hash.is_not(None))
    if names is not None:
        query = query.where(Image.name.in_(sorted(names)))
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


@dataclass
class PieceReader:
    """The stored maps and cases the pieces read, and the calibration voxels last read (the granularities of one
    TS configuration share them when run one after another)."""

    loader: StoredMaps
    cases: Mapping[str, StoredCase]
    calibration: LastCalibration

    @classmethod
    def of(cls, loader: StoredMaps, cases: Sequence[StoredCase]) -> PieceReader:
        """A reader on ``loader``'s session over ``cases``."""
        return cls(loader, {c.image.name: c for c in cases}, LastCalibration(loader))


@contextmanager
def piece_reader(session: Session, piece: Piece) -> Iterator[PieceReader]:
    """A reader of the cases one piece needs, on a session of its own (a task's)."""
    source, store = piece.source, ArtifactStore(piece.source.artifacts)
    needed = {*piece.calibration, *piece.evaluated}
    yield PieceReader.of(StoredMaps(session, store, source.settings),
                         stored_cases(session, store, source.model_set_id, names=needed))


def fit_piece(reader: PieceReader, piece: Piece) -> list[dict[str, object]]:
    """The ``temperature_fits`` columns of each of the piece's fits (:func:`fit_columns`)."""
    found = reader.calibration([reader.cases[n] for n in piece.calibration], piece.configuration, piece.twin)
    return [fit_columns([found[n] for n in plan.pooled], piece.granularity, reader.loader.settings)
            for plan in piece.fits]


def evaluate_piece(reader: PieceReader, piece: Piece, fits: Sequence[TemperatureFit]) -> list[CaseRows]:
    """The TS result of each of the piece's cases with its fit (the repeat's; or the deployed one that
    :func:`fit_for` picks, never one fitted on the case), its maps written."""
    rows = []
    for name in piece.evaluated:
        chosen = fits[0] if piece.repeat is not None else fit_for(name, fits)
        assert chosen is not None and name not in chosen.cases  # a fold's cross-fit excludes it
        rows.append((name, _evaluate(reader, piece, reader.cases[name], chosen)))
    return rows


def _evaluate(reader: PieceReader, piece: Piece, case: StoredCase, fit: TemperatureFit) -> ResultRows:
    loader, source, configuration, twin = reader.loader, piece.source, piece.configuration, piece.twin
    began = time.perf_counter()
    scaling = applied_scaling(fit, case.image.acquisition)
    probabilities, temperature = loader.scored(case.processing.id, case.image.name, configuration, twin, scaling)
    result = evaluate_configuration(probabilities, case.labels, case.spacing, loader.settings, temperature,
                                    source.budget)
    outcome = Outcome(configuration.name, recorded_temperature(scaling), result, case.labels is not None,
                      time.perf_counter() - began, body_entropy(result, loader.body(case.image.id, case.image.name)))
    counts = np.bincount(case.labels.ravel(), minlength=len(source.labels)) if case.labels is not None else None
    prefix = result_prefix(case.image.name, source.model_identity, configuration.name, fit.id)
    cost = twin_cost(loader.session, case.processing.id, twin.id)
    return ResultRows(configuration.id, fit.id, result_row(outcome) | cost, value_rows(outcome),
                      structure_rows(outcome, source.labels, counts), curve_rows(outcome), bin_rows(outcome),
                      map_artifacts(loader.store, prefix, outcome),
                      result_regions(outcome, case.spacing) if fit.role in DEPLOYED_ROLES else ())


class PieceRunner(Interface):
    """Runs the pieces' steps and gives their answers in the pieces' order."""

    def fits(self, pieces: Sequence[Piece]) -> list[list[dict[str, object]]]:
        """:func:`fit_piece` of each piece."""

    def results(self, pieces: Sequence[Piece], fits: Sequence[Sequence[TemperatureFit]]) -> Iterable[list[CaseRows]]:
        """:func:`evaluate_piece` of each piece with its inserted fits."""


@dataclass(frozen=True)
class InProcessPieces:
    """The pieces one after another in the stage's own process, on its session."""

    reader: PieceReader

    def fits(self, pieces: Sequence[Piece]) -> list[list[dict[str, object]]]:
        """:func:`fit_piece` of each piece."""
        return [fit_piece(self.reader, piece) for piece in pieces]

    def results(self, pieces: Sequence[Piece], fits: Sequence[Sequence[TemperatureFit]]) -> Iterator[list[CaseRows]]:
        """:func:`evaluate_piece` of each piece with its inserted fits, one piece at a time (its rows are written
        before the next is evaluated, as the stage did before it had pieces)."""
        for piece, found in zip(pieces, fits, strict=True):
            yield evaluate_piece(self.reader, piece, found)
