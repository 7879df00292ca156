"""The protocol stage's pieces on a Dask LocalCluster of 2 worker processes, on SQLite and PostgreSQL: the stored
protocol (every temperature and every metric value of its TS results, to the last bit, and the bytes of their maps)
equals the one computed in the stage's own process; and the pieces are one per repeat and TS configuration, plus one
per TS configuration for the deployment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client
from sqlalchemy import select

from pipeline.batch.cases import discover
from pipeline.batch.cluster import ClusterSpec, DaskPieces, connect
from pipeline.batch.protocol_pieces import PieceRunner, PieceSource
from pipeline.batch.protocol_stage import ProtocolOptions, plan_pieces, run_protocol
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.batch.splits import repeated_holdout
from pipeline.batch.temperature_fits import StoredCase
from pipeline.demo import DEMO_MODELS
from pipeline.inference.model_set import load_model_set_file
from pipeline.metrics.settings import MetricSettings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import make_engine, session_factory
from pipeline.store.schema import (
    Artifact,
    CaseResult,
    Configuration,
    Image,
    MetricValue,
    ModelSet,
    Processing,
    TemperatureFit,
)
from tests.store.test_cluster import _checksum

SETTINGS = MetricSettings(temperature_granularities=("configuration", "class"))
OPTIONS = ProtocolOptions(cohort="phantom", repeats=2)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with connect(ClusterSpec(workers=2)) as client:
        yield client


def _fit_key(fit: TemperatureFit, configuration: str) -> tuple[Any, ...]:
    return configuration, fit.role, fit.repeat, tuple(fit.cases)


def _protocol(url: str, artifacts: Path, runner: PieceRunner | None) -> dict[str, Any]:
    """Run the protocol (in this process when ``runner`` is None); what it stored, keyed without row ids."""
    engine = make_engine(url)
    with session_factory(engine).begin() as session:
        run_protocol(session, ArtifactStore(artifacts), session.scalars(select(ModelSet)).one(), OPTIONS, runner)
    with session_factory(engine)() as session:
        fits = {_fit_key(f, c): (f.temperature, f.nll_before, f.nll_after, f.voxels, f.temperatures)
                for f, c in session.execute(select(TemperatureFit, Configuration.name).join(
                    Configuration, Configuration.id == TemperatureFit.configuration_id))}
        results = session.execute(select(CaseResult, Image.name, Configuration.name, TemperatureFit)
                                  .join(Image, Image.id == CaseResult.image_id)
                                  .join(Configuration, Configuration.id == CaseResult.configuration_id)
                                  .join(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)).all()
        keys = {r.id: (image, *_fit_key(fit, configuration)) for r, image, configuration, fit in results}
        values = sorted((keys[v.result_id], v.class_index, v.name, v.value) for v in session.scalars(
            select(MetricValue).where(MetricValue.result_id.in_(keys))))
        maps = sorted((keys[a.result_id], a.kind, _checksum(artifacts / a.path)) for a in session.scalars(
            select(Artifact).where(Artifact.result_id.in_(keys))))
        temperatures = sorted((keys[r.id], r.temperature) for r, *_ in results)
    engine.dispose()
    return {"fits": fits, "values": values, "maps": maps, "temperatures": temperatures}


def test_the_protocol_on_a_cluster_equals_the_in_process_protocol(
    client: Client, store_url: str, phantom_folder: Path, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    summary = run_batch(BatchOptions(cases=tuple(discover(phantom_folder, "phantom")),
                                     model_set=load_model_set_file(DEMO_MODELS), models_source=str(DEMO_MODELS),
                                     database_url=store_url, artifacts=artifacts, tta=False, progress=False,
                                     settings=SETTINGS))
    assert len(summary.done) == 3
    in_process = _protocol(store_url, artifacts, None)
    on_cluster = _protocol(store_url, artifacts, DaskPieces(client))
    assert {key[1] for key in in_process["fits"]} == {"repeat", "deployed", "crossfit"}
    assert {key[0] for key in in_process["fits"]} >= {"DE+TS", "DE+TS/class"}
    assert len(in_process["values"]) > 100 and in_process["maps"]
    assert on_cluster == in_process


def _configuration(index: int, name: str, granularity: str = "configuration") -> Configuration:
    return Configuration(id=index, model_set_id=1, name=name, position=index, members=["m0", "m1"], views=[[]],
                         temperature_scaling="+TS" in name, temperature_granularity=granularity)


def test_the_pieces_are_one_per_repeat_and_ts_configuration_then_one_per_deployment() -> None:
    names = [f"case_{i}" for i in range(6)]
    cohort = [StoredCase(Image(id=i, name=n), Processing(id=i), None, (1.0, 1.0, 1.0)) for i, n in enumerate(names)]
    other = StoredCase(Image(id=9, name="night_0"), Processing(id=9), None, (1.0, 1.0, 1.0))
    de, st = _configuration(1, "DE"), _configuration(2, "ST")
    targets = [(_configuration(3, "DE+TS"), de, "configuration"),
               (_configuration(4, "DE+TS/class", "class"), de, "class"),
               (_configuration(5, "ST+TS"), st, "configuration")]
    splits = repeated_holdout(names, 3, test_fraction=0.5, seed=0, with_development=False)
    source = PieceSource("sqlite://", Path("artifacts"), SETTINGS, 0.1, 1, "identity", ("background", "organ"))
    pieces = plan_pieces(source, splits, targets, cohort, [*cohort, other], seed=0)
    assert [(p.repeat, p.configuration.name, p.twin.name, p.granularity) for p in pieces] == [
        *((split.repeat, t.name, twin.name, granularity) for split in splits for t, twin, granularity in targets),
        *((None, t.name, twin.name, granularity) for t, twin, granularity in targets)]
    for piece in pieces[:9]:
        split = splits[piece.repeat]
        assert [(f.role, f.cases, f.pooled) for f in piece.fits] == [("repeat", *[tuple(split.calibration)] * 2)]
        assert piece.calibration == tuple(split.calibration) and piece.evaluated == tuple(split.test)
    for piece in pieces[9:]:
        assert [f.role for f in piece.fits] == ["deployed", *["crossfit"] * 5]
        assert piece.fits[0].cases == piece.calibration == tuple(names)
        assert piece.evaluated == (*names, "night_0")
        assert sorted(n for f in piece.fits[1:] for n in set(names) - set(f.cases)) == names  # each case left out once
