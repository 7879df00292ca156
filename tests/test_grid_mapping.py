"""The spec's ``grid_mapping``: ``pooled`` (pool on the network's grid, map each configuration once) against
``per_pass`` (map every pass, pool on the CT grid), on the session's smoke-trained nnU-Net models and, where the
numbers are asserted, the committed demo models (fixed weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from numpy.typing import NDArray

from pipeline.inference.engine import MemberPredictor
from pipeline.inference.grid import grid_for
from pipeline.inference.model_set import ModelSet, load_model_set_file
from pipeline.inference.pooling import predict_grid
from pipeline.metrics.pooling import MemberPool
from pipeline.phantoms.ct import generate_phantom

REPO_ROOT = Path(__file__).resolve().parents[1]
# Measured with the demo models (retrained 2026-12-06) on the finer CT grid below: the largest |p_pooled - p_per_pass|
# of any voxel, class and configuration (0.660, Base; at structure boundaries, where interpolated logits are sharper
# than interpolated probabilities; the earlier models gave 0.527, CE), and the smallest argmax agreement of a
# configuration (99.94 %, CE).
MAX_DIFFERENCE_FINER_GRID = 0.67
MIN_ARGMAX_AGREEMENT_FINER_GRID = 0.999


@pytest.fixture(scope="module")
def plans_grid_ct() -> sitk.Image:
    """A phantom on the plans' grid (48 x 64 x 64 at 12 x 7 x 7 mm): the network's grid is the CT grid."""
    phantom = generate_phantom(4242)
    image = sitk.GetImageFromArray(phantom.ct)
    image.SetSpacing(tuple(reversed(phantom.spacing)))
    return image


@pytest.fixture(scope="module")
def finer_ct(plans_grid_ct: sitk.Image) -> sitk.Image:
    """The same phantom resampled (linear) to 60 x 80 x 80 at 9.6 x 5.6 x 5.6 mm: the grids differ."""
    return sitk.Resample(plans_grid_ct, (80, 80, 60), sitk.Transform(), sitk.sitkLinear, plans_grid_ct.GetOrigin(),
                         (5.6, 5.6, 9.6), plans_grid_ct.GetDirection(), -1000, sitk.sitkInt16)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread: stable times when other processes share the cores (see the nnU-Net-on-CPU notes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _grid_maps(predictor: MemberPredictor, image: sitk.Image, mapping: str, tta: bool = True
               ) -> tuple[dict[str, NDArray[np.float32]], int]:
    predictor.mappings = 0
    grid = grid_for(predictor.model_set, predictor.mirror_axes() if tta else ())
    maps = dict(predict_grid(predictor, image, grid, grid_mapping=mapping))  # type: ignore[arg-type]
    return maps, predictor.mappings


def test_pooled_equals_per_pass_where_the_grids_coincide_with_one_mapping_per_configuration(
    model_set: ModelSet, plans_grid_ct: sitk.Image
) -> None:
    predictor = MemberPredictor(model_set)
    grid = grid_for(model_set, ())
    pooled, pooled_mappings = _grid_maps(predictor, plans_grid_ct, "pooled", tta=False)
    passes = set().union(*(c.passes for c in grid))
    assert set(predictor.forward_passes) == passes and set(predictor.forward_passes.values()) == {1}
    assert pooled_mappings == len({c.pool_key for c in grid}) == 3
    per_pass, per_pass_mappings = _grid_maps(predictor, plans_grid_ct, "per_pass", tta=False)
    assert per_pass_mappings == len(passes) == len(model_set.members)
    assert list(pooled) == list(per_pass) == [c.name for c in grid]
    for name in pooled:
        np.testing.assert_allclose(pooled[name], per_pass[name], rtol=0, atol=2e-6, err_msg=name)
        top_two = np.sort(per_pass[name], axis=0)[-2:]
        clear = top_two[1] - top_two[0] > 4e-6  # the smoke models are barely trained: near-ties abound
        assert np.array_equal(pooled[name].argmax(0)[clear], per_pass[name].argmax(0)[clear]), name


@pytest.mark.parametrize(("rule", "member_temperature"), [("logit_mean", None), ("prob_mean", {"TTA+TS": 2.5})])
def test_pooling_rules_and_member_temperatures_pool_alike_on_either_grid(
    model_set: ModelSet, plans_grid_ct: sitk.Image, rule: str, member_temperature: dict[str, float] | None
) -> None:
    predictor = MemberPredictor(model_set)
    grid = [c for c in grid_for(model_set, predictor.mirror_axes()) if c.name in ("TTA", "TTA+TS")]
    maps = {mapping: dict(predict_grid(predictor, plans_grid_ct, grid, rule, member_temperature, mapping))  # type: ignore[arg-type]
            for mapping in ("pooled", "per_pass")}
    for name in ("TTA", "TTA+TS"):
        np.testing.assert_allclose(maps["pooled"][name], maps["per_pass"][name], rtol=0, atol=2e-6, err_msg=name)
    same = np.array_equal(maps["pooled"]["TTA"], maps["pooled"]["TTA+TS"])
    assert same == (member_temperature is None)


def test_per_pass_is_the_per_pass_pool_of_nnunet_mapped_logits(model_set: ModelSet, finer_ct: sitk.Image) -> None:
    """``per_pass`` is bit for bit the running pool of each pass's CT-grid logits (nnU-Net's resampling)."""
    predictor = MemberPredictor(model_set)
    grid = grid_for(model_set, ())
    per_pass = dict(predict_grid(predictor, finer_ct, grid, grid_mapping="per_pass"))
    case = predictor.preprocess(finer_ct)
    for configuration in (c for c in grid if c.name in ("Base", "DE")):
        pool = MemberPool()
        for pair in predictor.ordered(list(configuration.passes)):
            pool.add(predictor.forward(case, *pair))
        assert np.array_equal(per_pass[configuration.name], pool.probabilities()), configuration.name


def test_pooled_and_per_pass_differ_by_a_measured_bound_on_a_finer_grid(finer_ct: sitk.Image) -> None:
    predictor = MemberPredictor(load_model_set_file(REPO_ROOT / "models" / "demo" / "manifest.json"))
    pooled, mappings = _grid_maps(predictor, finer_ct, "pooled")
    assert len(predictor.forward_passes) == 48 and set(predictor.forward_passes.values()) == {1}
    per_pass, per_pass_mappings = _grid_maps(predictor, finer_ct, "per_pass")
    assert (mappings, per_pass_mappings) == (6, 48)
    largest = 0.0
    for name, probs in pooled.items():
        for maps in (probs, per_pass[name]):
            assert maps.shape == (3, 60, 80, 80) and maps.dtype == np.float32
            assert maps.min() >= 0 and np.abs(maps.sum(axis=0) - 1).max() < 1e-5
        agreement = (probs.argmax(0) == per_pass[name].argmax(0)).mean()
        assert agreement >= MIN_ARGMAX_AGREEMENT_FINER_GRID >= 0.99, (name, agreement)
        largest = max(largest, float(np.abs(probs - per_pass[name]).max()))
    assert 0.1 < largest <= MAX_DIFFERENCE_FINER_GRID


def test_the_stream_holds_one_ct_grid_map_at_a_time(model_set: ModelSet, finer_ct: sitk.Image) -> None:
    predictor = MemberPredictor(model_set)
    yielded: list[weakref.ref[NDArray[np.float32]]] = []
    live_when_mapping: list[int] = []
    to_ct_grid = predictor.to_ct_grid

    def watched(*args: Any) -> NDArray[np.float32]:
        live_when_mapping.append(sum(ref() is not None for ref in yielded))
        return to_ct_grid(*args)

    predictor.to_ct_grid = watched  # type: ignore[method-assign]
    prediction = predict_grid(predictor, finer_ct, grid_for(model_set, ()))
    assert live_when_mapping == []  # the passes ran; nothing is mapped before it is asked for
    names = []
    for name, probs in prediction:
        if not yielded or yielded[-1]() is not probs:
            yielded.append(weakref.ref(probs))
        names.append(name)
        del probs
    assert names == ["Base", "Base+TS", "DE", "DE+TS", "CE", "CE+TS"]
    assert live_when_mapping == [0] * 3 and len(yielded) == 3
    assert all(ref() is None for ref in yielded)
    with pytest.raises(RuntimeError, match="once"):
        next(iter(prediction))


def test_predict_writes_every_configuration_with_one_mapping_each(
    smoke_run: tuple[Path, dict[str, Any]], finer_ct: sitk.Image, tmp_path: Path
) -> None:
    sitk.WriteImage(finer_ct, str(tmp_path / "ct.nii.gz"))
    (tmp_path / "t.json").write_text(json.dumps({"DE+TS": 1.7}))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "predict", "--models", str(smoke_run[0] / "manifest.json"),
         "--ct", str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "out"), "--temperatures",
         str(tmp_path / "t.json"), "--device", "cpu"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["grid_mapping"] == "pooled" and summary["mappings"] == 6 and summary["forward_passes"] == 32
    assert summary["written"] == ["Base", "TTA", "DE", "DE+TS", "DE+TTA", "CE", "CE+TTA"]
    written = sitk.ReadImage(str(tmp_path / "out" / "DE+TS.nii.gz"))
    assert written.GetSize()[:3] == finer_ct.GetSize()
    assert written.GetSpacing()[:3] == pytest.approx(finer_ct.GetSpacing())


def test_the_batch_input_hash_includes_the_grid_mapping(model_set: ModelSet, tmp_path: Path) -> None:
    from pipeline.batch.case_task import BatchOptions
    from pipeline.batch.case_task import input_hash as batch_input_hash
    from pipeline.metrics.settings import GridMapping, MetricSettings

    case = SimpleNamespace(content_hash="c" * 64, reference_hash=None)

    def input_hash(mapping: GridMapping) -> str:
        options = BatchOptions(cases=(), model_set=model_set, models_source="smoke", database_url="sqlite://",
                               artifacts=tmp_path, settings=MetricSettings(grid_mapping=mapping))
        return batch_input_hash(case, options, grid_for(model_set, ()), "v")  # type: ignore[arg-type]

    assert input_hash("pooled") != input_hash("per_pass")
