"""The batch with the sweep on real tiny nnU-Net models, into SQLite and PostgreSQL: every sub-configuration stored
like any configuration (scalars, curves, reliability bins, cost), voxel maps only when asked, and no extra pass."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from pipeline.batch.cases import discover
from pipeline.batch.protocol_stage import ProtocolOptions, run_protocol
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.inference.model_set import ModelSet
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import make_engine, session_factory
from pipeline.store.schema import Artifact, CaseResult, Configuration, CurvePoint, Processing, ReliabilityBin
from pipeline.store.schema import ModelSet as ModelSetRow
from qa_dashboard.queries.worklist import configurations as worklist_configurations


def _run(model_set: ModelSet, url: str, artifacts: Path, folder: Path, cases: int = 1, **sweep: bool) -> None:
    options = BatchOptions(cases=tuple(discover(folder, "phantom"))[:cases], model_set=model_set, models_source="smoke",
                           database_url=url, artifacts=artifacts, tta=True, progress=False, **sweep)
    assert run_batch(options).exit_code == 0


def _stored(url: str) -> tuple[dict[str, tuple[CaseResult, set[str], int, int]], int]:
    """Per configuration name: its result, its artifact kinds, curve points and bins; the processing's passes."""
    engine = make_engine(url)
    with session_factory(engine)() as session:
        found = {}
        for result, name in session.execute(select(CaseResult, Configuration.name).join(Configuration)):
            kinds = set(session.scalars(select(Artifact.kind).where(Artifact.configuration_id
                                                                    == result.configuration_id)))
            curve = len(session.scalars(select(CurvePoint.budget).where(CurvePoint.result_id == result.id)).all())
            bins = len(session.scalars(select(ReliabilityBin.bin).where(ReliabilityBin.result_id == result.id)).all())
            found[name] = (result, kinds, curve, bins)
        passes = session.scalar(select(Processing.forward_passes))
        sweep = {c.name for c in session.scalars(select(Configuration).where(Configuration.sweep))}
    engine.dispose()
    assert sweep == {name for name in found if name not in SPEC}
    return found, passes


SPEC = {"Base", "TTA", "DE", "DE+TTA", "CE", "CE+TTA"}


def test_the_sweep_stores_scalars_curves_and_cost_without_maps_and_no_extra_pass(
    model_set: ModelSet, store_url: str, tmp_path: Path, phantom_folder: Path
) -> None:
    _run(model_set, store_url, tmp_path / "artifacts", phantom_folder, sweep=True)
    found, passes = _stored(store_url)
    assert passes == len(model_set.members) * 8, "the sweep's configurations cost no forward pass of their own"
    assert set(found) > SPEC and {"TTA2", "DE2+TTA4", "CE1", "CE1+TTA8"} <= set(found)
    for name, (result, kinds, curve, bins) in found.items():
        assert curve == 51 and bins > 0, name
        assert result.device == "cpu" and result.seconds_inference > 0, name
        if name in SPEC:
            assert {"entropy", "prediction", "probabilities"} <= kinds, name
        else:
            assert kinds == set(), f"{name}: a sweep configuration stores no voxel map unless asked"
    assert found["TTA2"][0].forward_passes == 2
    assert found["DE2+TTA4"][0].forward_passes == 8
    assert found["CE1"][0].forward_passes == 1
    folds = len([m for m in model_set.members if m.name.startswith("fold_")])
    assert found["DE+TTA"][0].forward_passes == folds * 8
    assert set(_offered(store_url)) == {*SPEC, *(f"{name}+TS" for name in SPEC)} & set(found), \
        "the worklist offers no sweep configuration without maps"


def test_ts_results_of_the_protocol_cost_what_their_twins_cost(
    model_set: ModelSet, store_url: str, tmp_path: Path, phantom_folder: Path
) -> None:
    _run(model_set, store_url, tmp_path / "artifacts", phantom_folder, cases=3)
    engine = make_engine(store_url)
    with session_factory(engine).begin() as session:
        run_protocol(session, ArtifactStore(tmp_path / "artifacts"), session.scalars(select(ModelSetRow)).one(),
                     ProtocolOptions(cohort="phantom", repeats=1))
    with session_factory(engine)() as session:
        rows = session.execute(select(Configuration.name, CaseResult.processing_id, CaseResult.forward_passes,
                                      CaseResult.seconds_inference, CaseResult.device).join(Configuration)).all()
    engine.dispose()
    uncalibrated = {(name, processing): cost for name, processing, *cost in rows if not name.endswith("+TS")}
    scaled = [(name, processing, cost) for name, processing, *cost in rows if name.endswith("+TS")]
    assert scaled
    for name, processing, cost in scaled:
        assert cost == uncalibrated[(name.removesuffix("+TS"), processing)], name


def test_sweep_maps_store_the_sub_configurations_voxel_maps(
    model_set: ModelSet, store_url: str, tmp_path: Path, phantom_folder: Path
) -> None:
    _run(model_set, store_url, tmp_path / "artifacts", phantom_folder, sweep=True, sweep_maps=True)
    found, _ = _stored(store_url)
    assert {"entropy", "prediction", "probabilities"} <= found["CE2+TTA4"][1]
    assert set(_offered(store_url)) == set(found), "with their maps the worklist offers them"


def _offered(url: str) -> list[str]:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        offered = worklist_configurations(session)
    engine.dispose()
    return offered
