"""The configuration grid and the model-set reader (no network needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.inference.grid import IDENTITY, default_grid, mirror_views, sweep_grid
from pipeline.inference.model_set import ModelSetError, load_model_set

FOLDS = [f"fold_{i}" for i in range(5)]
CYCLES = ["ce_cycle_1", "ce_cycle_2", "ce_cycle_3"]


def test_grid_has_the_spec_configurations_and_shares_passes() -> None:
    grid = default_grid("fold_0", FOLDS, CYCLES, mirror_views())
    assert [c.name for c in grid] == [
        "Base", "Base+TS", "TTA", "TTA+TS", "DE", "DE+TS", "DE+TTA", "DE+TTA+TS", "CE", "CE+TS", "CE+TTA", "CE+TTA+TS",
    ]
    by_name = {c.name: c for c in grid}
    assert by_name["Base"].passes == {("fold_0", IDENTITY)}
    assert len(by_name["TTA"].passes) == 8
    assert len(by_name["DE+TTA"].passes) == 40
    assert by_name["CE"].passes == {(m, IDENTITY) for m in CYCLES}
    assert by_name["DE+TS"].pool_key == by_name["DE"].pool_key
    assert len(set().union(*(c.passes for c in grid))) == (len(FOLDS) + len(CYCLES)) * 8


def test_mirror_views_are_the_eight_flip_combinations() -> None:
    views = mirror_views()
    assert views[0] == IDENTITY
    assert len(views) == len(set(views)) == 8
    assert (0, 1, 2) in views


def test_a_2d_model_mirrors_its_two_patch_axes_in_four_views() -> None:
    views = mirror_views((0, 1))
    assert views == (IDENTITY, (0,), (1,), (0, 1))
    by_name = {c.name: c for c in default_grid("fold_0", FOLDS, CYCLES, views)}
    assert len(by_name["TTA"].passes) == 4
    assert len(by_name["CE+TTA"].passes) == len(CYCLES) * 4


def test_grid_without_checkpoints_or_mirroring_leaves_those_rows_out() -> None:
    assert [c.name for c in default_grid("fold_0", FOLDS, [], mirror_views())][-2:] == ["DE+TTA", "DE+TTA+TS"]
    assert [c.name for c in default_grid("fold_0", FOLDS, CYCLES, [IDENTITY])] == [
        "Base", "Base+TS", "DE", "DE+TS", "CE", "CE+TS",
    ]


def test_grid_rejects_an_empty_ensemble_and_views_without_identity() -> None:
    with pytest.raises(ValueError, match="at least one"):
        default_grid("fold_0", [], CYCLES, mirror_views())
    with pytest.raises(ValueError, match="identity"):
        default_grid("fold_0", FOLDS, CYCLES, [(0,), (1,)])


def _results_folder(root: Path, labels: dict[str, int]) -> Path:
    folder = root / "Trainer__Plans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"weights")
    (folder / "dataset.json").write_text(json.dumps({"labels": labels, "channel_names": {"0": "CT"}}))
    (folder / "plans.json").write_text(json.dumps({"configurations": {"3d_fullres": {}}}))
    return folder


def test_model_set_reads_members_and_hashes_them(tmp_path: Path) -> None:
    folder = _results_folder(tmp_path, {"background": 0, "lymph_nodes": 1, "spleen": 2})
    model_set = load_model_set(folder, folds=[0])
    assert model_set.labels == ("background", "lymph_nodes", "spleen")
    assert [m.name for m in model_set.members] == ["fold_0"]
    assert len(model_set.identity()) == 16


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing_checkpoint", "fold_1/checkpoint_final.pth: checkpoint missing"),
        ("missing_plans", "plans.json: missing"),
        ("bad_json", "dataset.json: not readable JSON"),
        ("region_labels", "labels must be 0..C-1"),
        ("wrong_configuration", "configuration '3d_fullres'"),
    ],
)
def test_model_set_errors_name_the_file(tmp_path: Path, breakage: str, message: str) -> None:
    folder = _results_folder(tmp_path, {"background": 0, "spleen": 1})
    folds = [0]
    if breakage == "missing_checkpoint":
        folds = [0, 1]
    elif breakage == "missing_plans":
        (folder / "plans.json").unlink()
    elif breakage == "bad_json":
        (folder / "dataset.json").write_text("{not json")
    elif breakage == "region_labels":
        (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "organ": [1, 2]}}))
    elif breakage == "wrong_configuration":
        (folder / "plans.json").write_text(json.dumps({"configurations": {"2d": {}}}))
    with pytest.raises(ModelSetError, match=message):
        load_model_set(folder, folds=folds)


def test_checkpoint_run_with_other_labels_is_refused(tmp_path: Path) -> None:
    folder = _results_folder(tmp_path / "a", {"background": 0, "spleen": 1})
    other = _results_folder(tmp_path / "b", {"background": 0, "liver": 1})
    (other / "fold_all").mkdir()
    (other / "fold_all" / "checkpoint_cycle_1.pth").write_bytes(b"w")
    with pytest.raises(ModelSetError, match="labels differ"):
        load_model_set(folder, folds=[0], checkpoint_run=other / "fold_all", run_checkpoints=["checkpoint_cycle_1.pth"])


def test_the_sweep_takes_first_folds_last_checkpoints_and_first_views_without_repeating_the_grid() -> None:
    views = mirror_views()
    grid = default_grid("fold_0", FOLDS[:3], CYCLES, views)
    sweep = {c.name: c for c in sweep_grid(FOLDS[:3], CYCLES, views, grid)}
    assert list(sweep) == [
        "TTA2", "TTA4", "DE2", "DE2+TTA2", "DE2+TTA4", "DE2+TTA8", "DE3+TTA2", "DE3+TTA4",
        "CE1", "CE1+TTA2", "CE1+TTA4", "CE1+TTA8", "CE2", "CE2+TTA2", "CE2+TTA4", "CE2+TTA8", "CE3+TTA2", "CE3+TTA4",
    ]
    assert sweep["DE2+TTA4"].members == ("fold_0", "fold_1")
    assert sweep["DE2+TTA4"].views == (IDENTITY, (0,), (1,), (2,))
    assert sweep["CE1"].members == ("ce_cycle_3",) and sweep["CE1"].views == (IDENTITY,)
    assert sweep["CE2+TTA2"].members == ("ce_cycle_2", "ce_cycle_3") and sweep["CE2+TTA2"].views == (IDENTITY, (0,))
    assert all(c.sweep and not c.temperature_scaling for c in sweep.values())
    keys = [c.pool_key for c in (*grid, *sweep.values()) if not c.temperature_scaling]
    assert len(keys) == len(set(keys)), "no sub-configuration pools what another configuration pools"
    everything = set().union(*(c.passes for c in grid))
    assert set().union(*(c.passes for c in sweep.values())) <= everything, "the sweep needs no pass of its own"


def test_the_sweep_of_a_2d_model_stops_at_its_four_views() -> None:
    views = mirror_views((0, 1))
    grid = default_grid("fold_0", FOLDS[:2], [], views)
    sweep = sweep_grid(FOLDS[:2], [], views, grid)
    assert [c.name for c in sweep] == ["TTA2", "DE2+TTA2"]
    assert {len(c.views) for c in sweep} == {2}
