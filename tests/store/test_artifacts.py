"""pipeline.store.artifacts: voxel maps as zarr arrays (one axial slice per chunk) and their NIfTI export."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import zarr
from numpy.typing import NDArray

from pipeline.batch.cases import CaseSpec
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.errors import InputError
from pipeline.inference.model_set import load_model_set_file
from pipeline.io.maps import export_nifti
from pipeline.store.artifacts import AXES, ArtifactError, ArtifactStore, safe_name
from tests.io_corpus.build import DEMO_MANIFEST

SHAPE = (6, 7, 9)  # (Z, Y, X), all different so that a wrong axis shows


def _map(dtype: type, shape: tuple[int, ...] = SHAPE, seed: int = 0) -> NDArray[np.generic]:
    """A map with distinct-ish values of ``dtype`` (probabilities for floats, labels/HU for integers)."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        return rng.random(shape).astype(dtype)
    if dtype is np.bool_:
        return rng.random(shape) > 0.5
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1024), min(info.max, 3071), size=shape, endpoint=True).astype(dtype)


def _leftovers(folder: Path) -> list[str]:
    """Temporary or replaced folders a write may have left beside its target."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith((".tmp", ".old")))


def _chunk_files(array_folder: Path) -> list[Path]:
    return sorted(p for p in array_folder.rglob("*") if p.is_file() and p.name != "zarr.json")


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


# ---------------------------------------------------------------- write / read / read_slice


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [(np.uint8, SHAPE), (np.float16, SHAPE), (np.int16, SHAPE), (np.bool_, SHAPE), (np.float16, (3, *SHAPE))],
    ids=["uint8", "float16", "int16", "bool", "float16-CZYX"],
)
def test_write_then_read_round_trips(store: ArtifactStore, dtype: type, shape: tuple[int, ...]) -> None:
    array = _map(dtype, shape)
    relative = "case_1/model/probabilities.zarr"
    assert store.write(relative, array) == relative
    back = store.read(relative)
    assert back.dtype == array.dtype and back.shape == array.shape, f"{back.dtype}{back.shape} != {array.dtype}{shape}"
    np.testing.assert_array_equal(back, array)
    assert (store.root / relative / "zarr.json").is_file(), "the map must be a zarr v3 array at root/relative"


@pytest.mark.parametrize("shape", [SHAPE, (3, *SHAPE)], ids=["ZYX", "CZYX"])
@pytest.mark.parametrize("axis", sorted(AXES))
def test_read_slice_equals_numpy_slicing(store: ArtifactStore, shape: tuple[int, ...], axis: str) -> None:
    array = _map(np.float16, shape)
    store.write("map.zarr", array)
    offset = len(shape) - 3
    spatial = {"axial": 0, "coronal": 1, "sagittal": 2}[axis]
    for index in range(shape[offset + spatial]):
        expected = np.take(array, index, axis=offset + spatial)
        got = store.read_slice("map.zarr", axis, index)
        assert got.shape == expected.shape, f"{axis} {index}: shape {got.shape} != {expected.shape}"
        np.testing.assert_array_equal(got, expected, err_msg=f"{axis} slice {index}")
    if offset:
        assert store.read_slice("map.zarr", axis, 0).shape[0] == shape[0], "the class axis must stay first"


@pytest.mark.parametrize(
    ("shape", "chunks"),
    [(SHAPE, (1, 7, 9)), ((3, *SHAPE), (3, 1, 7, 9))],
    ids=["ZYX", "CZYX"],
)
def test_one_axial_slice_is_one_chunk(store: ArtifactStore, shape: tuple[int, ...], chunks: tuple[int, ...]) -> None:
    array = _map(np.float16, shape) + np.float16(1)  # no zero, so a missing chunk (fill value 0) shows
    store.write("map.zarr", array)
    folder = store.root / "map.zarr"
    stored = zarr.open_array(str(folder), mode="r")
    assert stored.chunks == chunks, f"chunks {stored.chunks} != {chunks}"
    assert stored.shape == shape and stored.dtype == array.dtype
    chunk_files = _chunk_files(folder)
    z_axis = len(shape) - 3
    assert len(chunk_files) == shape[z_axis], f"{len(chunk_files)} chunk files for {shape[z_axis]} axial slices"

    # keep only the chunk of axial slice 2: that slice still reads whole, every other slice is gone
    keep = 2
    expected = np.take(array, keep, axis=z_axis)
    for path in chunk_files:
        parts = path.relative_to(folder).parts  # zarr v3 default chunk keys: c/<i>/<j>/...
        if int(parts[1 + z_axis]) != keep:
            path.unlink()
    np.testing.assert_array_equal(store.read_slice("map.zarr", "axial", keep), expected)
    coronal = store.read_slice("map.zarr", "coronal", 0)
    assert np.count_nonzero(np.take(coronal, keep, axis=z_axis)) == coronal.size // shape[z_axis]
    others = np.delete(coronal, keep, axis=z_axis)
    assert not others.any(), "a coronal slice reads every axial chunk, so the deleted ones must be missing"


def test_rewrite_replaces_the_map_atomically(store: ArtifactStore) -> None:
    first = _map(np.float16, (5, 7, 9), seed=1)
    store.write("case/map.zarr", first)
    second = _map(np.uint8, (2, 4, 3), seed=2)  # other dtype, fewer slices: no chunk of the first may survive
    store.write("case/map.zarr", second)
    back = store.read("case/map.zarr")
    assert back.dtype == np.uint8 and back.shape == (2, 4, 3)
    np.testing.assert_array_equal(back, second)
    assert len(_chunk_files(store.root / "case" / "map.zarr")) == 2, "stale chunks of the first write remain"
    assert sorted(p.name for p in (store.root / "case").iterdir()) == ["map.zarr"]
    assert _leftovers(store.root / "case") == [], "temporary .tmp/.old folders left after the rewrite"
    store.write("case/map.zarr", second)  # the same content again
    np.testing.assert_array_equal(store.read("case/map.zarr"), second)
    assert _leftovers(store.root / "case") == []


class Killed(BaseException):
    """The process stopping, as kill -9 would, at a chosen moment."""


def _killed_write(store: ArtifactStore, relative: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A write killed after creating its temporary array, before the rename: returns the folder it leaves."""
    create = zarr.create_array

    def killed(*args: object, **kwargs: object) -> None:
        create(*args, **kwargs)
        raise Killed

    folder = (store.root / relative).parent
    before = set(folder.iterdir()) if folder.is_dir() else set()
    with monkeypatch.context() as patch:
        patch.setattr(zarr, "create_array", killed)
        with pytest.raises(Killed):
            store.write(relative, _map(np.uint8))
    (left,) = set(folder.iterdir()) - before
    assert re.fullmatch(r"\.map\.zarr\.[0-9a-f]{32}\.tmp", left.name)
    return left


def test_remove_stale_takes_only_leftovers_older_than_the_given_time(store: ArtifactStore,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store.write("case/map.zarr", _map(np.uint8))
    old = _killed_write(store, "case/map.zarr", monkeypatch)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    recent = _killed_write(store, "other/deep/map.zarr", monkeypatch)
    assert store.remove_stale(datetime.fromtimestamp(time.time() - 60, UTC)) == [old]
    assert not old.exists() and recent.exists()
    np.testing.assert_array_equal(store.read("case/map.zarr"), _map(np.uint8))  # maps are never touched
    assert store.remove_stale(datetime.now(UTC) + timedelta(seconds=5)) == [recent]


def test_an_unwritable_root_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    root = tmp_path / "file" / "artifacts"
    with pytest.raises(InputError, match=f"^QA_ARTIFACTS_DIR {re.escape(str(root))}: cannot write there "
                                         r"\(Not a directory\)$"):
        ArtifactStore(root).check_writable()
    ArtifactStore(tmp_path / "new" / "artifacts").check_writable()
    assert list((tmp_path / "new" / "artifacts").iterdir()) == []  # the probe file is gone


def test_the_next_run_removes_leftovers_older_than_the_newest_completed_run(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run finds the folders of killed writes: those older than the newest completed run's start go; one made
    since (a write of a run still going) stays. Cases that fail to read keep the runs cheap (no inference)."""
    artifacts = ArtifactStore(tmp_path / "artifacts")
    killed = _killed_write(artifacts, "case/map.zarr", monkeypatch)
    options = BatchOptions(cases=(CaseSpec("absent", tmp_path / "absent.nii.gz"),),
                           model_set=load_model_set_file(DEMO_MANIFEST), models_source="demo", database_url=store_url,
                           artifacts=artifacts.root, tta=False, progress=False)
    run_batch(options)
    assert killed.exists(), "no run had completed before the first: nothing is known to be stale"
    since = _killed_write(artifacts, "case/map.zarr", monkeypatch)
    run_batch(options)
    assert not killed.exists() and since.exists()


def test_delete(store: ArtifactStore) -> None:
    store.write("a/map.zarr", _map(np.uint8))
    store.delete("a/map.zarr")
    assert not (store.root / "a" / "map.zarr").exists()
    store.delete("a/map.zarr")  # already gone: no error
    with pytest.raises(ArtifactError, match=re.escape(str(store.root / "a" / "map.zarr"))):
        store.read("a/map.zarr")


# ---------------------------------------------------------------- bad input


def test_bad_axis_names_the_axis_and_the_map(store: ArtifactStore) -> None:
    store.write("map.zarr", _map(np.uint8))
    with pytest.raises(ArtifactError, match=r"axis must be one of \['axial', 'coronal', 'sagittal'\], got 'oblique'"
                       ) as caught:
        store.read_slice("map.zarr", "oblique", 0)
    assert str(store.root / "map.zarr") in str(caught.value)


@pytest.mark.parametrize(("axis", "index", "size"), [("axial", 6, 6), ("coronal", 7, 7), ("sagittal", -1, 9)])
def test_slice_out_of_range_names_the_map(store: ArtifactStore, axis: str, index: int, size: int) -> None:
    store.write("map.zarr", _map(np.uint8))
    expected = rf"^{axis} slice {index} is outside 0\.\.{size - 1} of " + re.escape(str(store.root / "map.zarr"))
    with pytest.raises(ArtifactError, match=expected):
        store.read_slice("map.zarr", axis, index)


def test_slice_out_of_range_of_a_class_map_counts_spatial_axes(store: ArtifactStore) -> None:
    store.write("probs.zarr", _map(np.float16, (3, *SHAPE)))
    assert store.read_slice("probs.zarr", "axial", 5).shape == (3, 7, 9)  # 6 slices, though only 3 classes
    with pytest.raises(ArtifactError, match=r"^axial slice 6 is outside 0\.\.5 of "):
        store.read_slice("probs.zarr", "axial", 6)


def test_missing_or_unreadable_map_names_the_path(store: ArtifactStore) -> None:
    missing = store.root / "nope" / "map.zarr"
    for read in (lambda: store.read("nope/map.zarr"), lambda: store.read_slice("nope/map.zarr", "axial", 0)):
        with pytest.raises(ArtifactError, match="^" + re.escape(str(missing)) + ": not a readable map"):
            read()
    broken = store.root / "broken.zarr"
    broken.mkdir(parents=True)
    (broken / "zarr.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="^" + re.escape(str(broken)) + ": not a readable map"):
        store.read("broken.zarr")
    zarr.create_group(str(store.root / "group.zarr"))
    with pytest.raises(ArtifactError, match="^" + re.escape(str(store.root / "group.zarr")) + ": not a readable map"):
        store.read("group.zarr")


@pytest.mark.parametrize("shape", [(7, 9), (7,), (1, 2, 3, 4, 5)])
def test_write_refuses_other_than_3d_or_4d(store: ArtifactStore, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=re.escape(f"got shape {shape}")):
        store.write("flat.zarr", np.zeros(shape, dtype=np.uint8))
    assert not store.root.exists() or not any(store.root.iterdir()), "a refused write must leave nothing behind"


def test_safe_name() -> None:
    assert safe_name("case/../etc") == "case_.._etc"
    assert "/" not in safe_name("a/b/c") and safe_name("a/b/c") == "a_b_c"
    assert safe_name("Patient Ä 01:ct") == "Patient___01_ct"
    assert safe_name("lung-CT_v1.2+fast") == "lung-CT_v1.2+fast", "allowed characters must be kept"
    for bad in ("..", ".", ""):
        with pytest.raises(ValueError, match="cannot name an artifact folder"):
            safe_name(bad)


# ---------------------------------------------------------------- export_nifti


@pytest.mark.parametrize(
    ("dtype", "read_dtype"),
    [(np.bool_, np.uint8), (np.float16, np.float32), (np.uint8, np.uint8), (np.int16, np.int16)],
    ids=["bool", "float16", "uint8", "int16"],
)
def test_export_nifti_keeps_values_and_geometry(tmp_path: Path, dtype: type, read_dtype: type) -> None:
    array = _map(dtype)
    spacing = [0.8, 0.9, 2.5]  # (x, y, z) as SimpleITK
    origin = [-120.5, 85.25, -30.0]
    direction = [1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]  # y flipped
    out = export_nifti(array, tmp_path / "export" / "map.nii.gz", spacing, origin, direction)
    assert out == tmp_path / "export" / "map.nii.gz" and out.is_file()

    image = sitk.ReadImage(str(out))
    back = sitk.GetArrayFromImage(image)
    assert back.dtype == read_dtype, f"{dtype.__name__} must come back as {read_dtype.__name__}, got {back.dtype}"
    np.testing.assert_array_equal(back, array.astype(read_dtype))
    assert image.GetSize() == tuple(reversed(SHAPE))
    np.testing.assert_allclose(image.GetSpacing(), spacing, atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), origin, atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), direction, atol=1e-6)
    # the flip is real: voxel (0, 1, 0) lies one row *below* the origin in y
    assert image.TransformIndexToPhysicalPoint((0, 1, 0)) == pytest.approx((-120.5, 85.25 - 0.9, -30.0), abs=1e-4)


def test_export_nifti_refuses_a_class_map(tmp_path: Path) -> None:
    identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match=r"NIfTI export takes one \(Z, Y, X\) map, got shape \(3, 6, 7, 9\)"):
        export_nifti(_map(np.float16, (3, *SHAPE)), tmp_path / "x.nii.gz", [1.0] * 3, [0.0] * 3, identity)
    assert not (tmp_path / "x.nii.gz").exists()
