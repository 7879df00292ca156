"""pipeline.batch.cases (and .rtstruct): finding a batch's cases and loading them with the checks the nightly job needs.

Cohort folders and manifests are built in ``tmp_path`` from small seeded phantoms written with SimpleITK; the DICOM
cases use the real series in ``../shared/data`` (see its SOURCES.md).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from numpy.typing import NDArray

from pipeline.batch.cases import CaseError, CaseSpec, LoadedCase, discover, load_case
from pipeline.phantoms.ct import LABELS, Phantom, generate_phantom

MODEL_LABELS: tuple[str, ...] = tuple(LABELS)  # ("background", "lymph_nodes", "spleen")
SHAPE = (10, 32, 32)
SPACING_ZYX = (3.0, 2.0, 2.0)
IBSI_ROI = "GTV_Mass_CT"
TOTALSEG_FRAME_OF_REFERENCE = "1.3.12.2.1107.5.1.4.60064.30000022120807274275100000041"


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def phantoms() -> tuple[Phantom, Phantom]:
    first, second = (generate_phantom(seed, shape=SHAPE, spacing=SPACING_ZYX) for seed in (1, 2))
    return first, second


def _write(
    array: NDArray[np.generic],
    path: Path,
    spacing_zyx: tuple[float, float, float] = SPACING_ZYX,
    origin_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Path:
    """Write a (Z, Y, X) array as an image file (SimpleITK takes spacing and origin as (x, y, z))."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(reversed(spacing_zyx)))
    image.SetOrigin(origin_xyz)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def _at(path: Path) -> str:
    """A regex matching a message that starts with ``path``."""
    return "^" + re.escape(str(path))


def _case_error(spec: CaseSpec, stage: str, labels: tuple[str, ...] = MODEL_LABELS) -> CaseError:
    """Load ``spec`` expecting a :class:`CaseError` of ``stage``; returns it for further checks of its message."""
    with pytest.raises(CaseError) as caught:
        load_case(spec, labels)
    assert caught.value.stage == stage, f"stage {caught.value.stage!r} != {stage!r}: {caught.value}"
    return caught.value


@pytest.fixture
def good_case(phantoms: tuple[Phantom, Phantom], tmp_path: Path) -> CaseSpec:
    """A phantom CT with its reference, both on the same grid."""
    phantom = phantoms[0]
    ct = _write(phantom.ct, tmp_path / "ct.nii.gz")
    reference = _write(phantom.labels, tmp_path / "reference.nii.gz")
    return CaseSpec("good", ct, reference)


# ---------------------------------------------------------------- cohort folder


def test_cohort_folder_finds_cases_and_their_references(phantoms: tuple[Phantom, Phantom], tmp_path: Path) -> None:
    first, second = phantoms
    _write(first.ct, tmp_path / "images" / "case_a.nii.gz")
    _write(first.labels, tmp_path / "references" / "case_a.nii.gz")
    _write(second.ct, tmp_path / "images" / "case_b_0000.nii.gz")  # nnU-Net channel naming
    _write(second.labels, tmp_path / "references" / "case_b.nii.gz")
    _write(second.ct, tmp_path / "images" / "case_c.mha")  # no reference
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    _write(first.labels, tmp_path / "references" / "orphan.nii.gz")  # a reference without an image is no case

    specs = discover(tmp_path, cohort="night")
    assert [s.name for s in specs] == ["case_a", "case_b", "case_c"], specs
    by_name = {s.name: s for s in specs}
    assert by_name["case_a"].ct == tmp_path / "images" / "case_a.nii.gz"
    assert by_name["case_a"].reference == tmp_path / "references" / "case_a.nii.gz"
    assert by_name["case_b"].ct == tmp_path / "images" / "case_b_0000.nii.gz"
    assert by_name["case_b"].reference == tmp_path / "references" / "case_b.nii.gz"
    assert by_name["case_c"].reference is None, "a case without a reference file must have reference None"
    assert all(s.cohort == "night" and s.source_kind == "image" for s in specs)

    loaded = {s.name: load_case(s, MODEL_LABELS) for s in specs}
    for name, phantom in (("case_a", first), ("case_b", second)):
        case = loaded[name]
        assert case.labels is not None and case.labels.dtype == np.uint8
        np.testing.assert_array_equal(case.labels, phantom.labels, err_msg=f"{name}: labels differ from the phantom")
        np.testing.assert_array_equal(sitk.GetArrayFromImage(case.image), phantom.ct, err_msg=f"{name}: CT differs")
        assert case.reference_hash is not None
    assert loaded["case_c"].labels is None and loaded["case_c"].reference_hash is None
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded["case_c"].image), second.ct)


def test_cohort_folder_without_references_folder(phantoms: tuple[Phantom, Phantom], tmp_path: Path) -> None:
    _write(phantoms[0].ct, tmp_path / "images" / "only.nii.gz")
    specs = discover(tmp_path)
    assert [(s.name, s.reference, s.cohort) for s in specs] == [("only", None, "default")]


def test_discover_refuses_what_is_not_a_source(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(ValueError, match=_at(missing) + ": not a CSV manifest, a cohort folder"):
        discover(missing)


# ---------------------------------------------------------------- CSV manifest


def test_manifest_paths_are_relative_to_its_folder(
    phantoms: tuple[Phantom, Phantom], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = phantoms
    _write(first.ct, tmp_path / "data" / "a_ct.nii.gz")
    _write(first.labels, tmp_path / "data" / "a_ref.nii.gz")
    absolute = _write(second.ct, tmp_path / "elsewhere" / "b.nii.gz")
    manifest = tmp_path / "lists" / "night.csv"
    manifest.parent.mkdir()
    manifest.write_text(
        "case,ct,reference,patient,cohort,reference_note\n"
        "a, ../data/a_ct.nii.gz , ../data/a_ref.nii.gz,P001,trial,contoured by Dr X\n"
        f"b,{absolute},,,,\n"
    )
    monkeypatch.chdir(tmp_path / "data")  # relative paths must not depend on the working folder

    specs = discover(manifest, cohort="nightly")
    assert [s.name for s in specs] == ["a", "b"]
    a, b = specs
    assert a.ct.resolve() == (tmp_path / "data" / "a_ct.nii.gz").resolve(), a.ct
    assert a.reference is not None and a.reference.resolve() == (tmp_path / "data" / "a_ref.nii.gz").resolve()
    assert (a.patient, a.cohort, a.reference_note) == ("P001", "trial", "contoured by Dr X")
    assert b.ct == absolute, "an absolute path must be kept as it is"
    assert (b.reference, b.patient, b.cohort, b.reference_note) == (None, None, "nightly", None), (
        "empty optional columns must fall back to None / the default cohort"
    )
    loaded = load_case(a, MODEL_LABELS)
    assert loaded.labels is not None
    np.testing.assert_array_equal(loaded.labels, first.labels)


def test_manifest_with_only_the_required_columns_and_a_bom(phantoms: tuple[Phantom, Phantom], tmp_path: Path) -> None:
    """Spreadsheet programs save "CSV UTF-8" with a byte-order mark before the first column name."""
    _write(phantoms[0].ct, tmp_path / "a.nii.gz")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"\xef\xbb\xbfcase,ct\r\na,a.nii.gz\r\n")
    specs = discover(manifest)
    assert [(s.name, s.ct, s.reference, s.patient, s.cohort) for s in specs] == [
        ("a", tmp_path / "a.nii.gz", None, None, "default")
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("case,image\na,a.nii.gz\n", r": a manifest needs a header with at least the columns case, ct"),
        ("", r": a manifest needs a header with at least the columns case, ct"),
        ("case,ct\n", r": the manifest lists no case"),
        ("case,ct\na,a.nii.gz\nb,\n", r":3: case and ct must not be empty"),
        ("case,ct\na,a.nii.gz\n ,b.nii.gz\n", r":3: case and ct must not be empty"),
        ("case,ct\na,a.nii.gz\nb,b.nii.gz\na,c.nii.gz\n", r": duplicate case names \['a'\]"),
        ("case,ct\n\xff\xfe,a\n", r": not a readable CSV manifest"),
    ],
    ids=["missing-ct-column", "empty-file", "no-rows", "empty-ct", "empty-case", "duplicate", "not-utf8"],
)
def test_bad_manifest_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    manifest = tmp_path / "bad.csv"
    manifest.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=_at(manifest) + message):
        discover(manifest)


# ---------------------------------------------------------------- load_case: hashes and geometry


def test_hashes_depend_on_content_not_on_the_file(
    phantoms: tuple[Phantom, Phantom], good_case: CaseSpec, tmp_path: Path
) -> None:
    phantom = phantoms[0]
    base = load_case(good_case, MODEL_LABELS)
    assert base.spacing_zyx == SPACING_ZYX
    assert len(base.content_hash) == 64 and base.reference_hash is not None

    copy = CaseSpec("copy", _write(phantom.ct, tmp_path / "copy" / "ct.nii"),  # same voxels, other name, uncompressed
                    _write(phantom.labels, tmp_path / "copy" / "ref.nii.gz"))
    again = load_case(copy, MODEL_LABELS)
    assert (again.content_hash, again.reference_hash) == (base.content_hash, base.reference_hash)
    assert load_case(good_case, MODEL_LABELS).content_hash == base.content_hash, "hash must be stable across loads"

    one_voxel = phantom.ct.copy()
    one_voxel[5, 16, 16] += 1
    changed = load_case(CaseSpec("voxel", _write(one_voxel, tmp_path / "voxel.nii.gz")), MODEL_LABELS)
    assert changed.content_hash != base.content_hash, "one voxel changed but the CT hash did not"

    spacing = (3.0, 2.0, 2.5)
    respaced = load_case(CaseSpec("spacing", _write(phantom.ct, tmp_path / "sp.nii.gz", spacing)), MODEL_LABELS)
    assert respaced.spacing_zyx == spacing
    assert respaced.content_hash != base.content_hash, "the spacing changed but the CT hash did not"

    relabelled = phantom.labels.copy()
    relabelled[relabelled == 2] = 1
    other_reference = CaseSpec("ref", good_case.ct, _write(relabelled, tmp_path / "ref2.nii.gz"))
    other = load_case(other_reference, MODEL_LABELS)
    assert other.content_hash == base.content_hash
    assert other.reference_hash != base.reference_hash, "the reference changed but its hash did not"


def test_loaded_case_keeps_the_ct_geometry(phantoms: tuple[Phantom, Phantom], tmp_path: Path) -> None:
    origin = (-12.5, 40.0, 7.25)
    spec = CaseSpec("moved", _write(phantoms[1].ct, tmp_path / "ct.mha", (2.5, 0.8, 0.9), origin),
                    _write(phantoms[1].labels, tmp_path / "ref.mha", (2.5, 0.8, 0.9), origin))
    case: LoadedCase = load_case(spec, MODEL_LABELS)
    assert case.spacing_zyx == pytest.approx((2.5, 0.8, 0.9))
    assert case.image.GetOrigin() == pytest.approx(origin)
    assert case.labels is not None and case.labels.shape == SHAPE


def test_integer_valued_float_reference_is_accepted(phantoms: tuple[Phantom, Phantom], good_case: CaseSpec) -> None:
    as_float = _write(phantoms[0].labels.astype(np.float32), good_case.ct.parent / "float_ref.nii.gz")
    case = load_case(CaseSpec("f", good_case.ct, as_float), MODEL_LABELS)
    assert case.labels is not None and case.labels.dtype == np.uint8
    np.testing.assert_array_equal(case.labels, phantoms[0].labels)


# ---------------------------------------------------------------- load_case: bad input, stage by stage


def test_corrupt_ct_is_a_read_error(tmp_path: Path) -> None:
    ct = tmp_path / "broken.nii.gz"
    ct.write_bytes(np.random.default_rng(0).bytes(4000))
    error = _case_error(CaseSpec("broken", ct), "read")
    assert re.match(_at(ct) + ": not a readable CT", str(error)), str(error)


def test_missing_ct_is_a_read_error(tmp_path: Path) -> None:
    ct = tmp_path / "absent.nii.gz"
    error = _case_error(CaseSpec("absent", ct), "read")
    assert str(ct) in str(error)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_ct_with_nan_or_inf_is_a_read_error(
    phantoms: tuple[Phantom, Phantom], tmp_path: Path, bad: float, suffix: str
) -> None:
    """NIfTI included: ITK 5's NIfTI reader turns NaN/±Inf into 0 HU silently, the check must not rely on it."""
    hu = phantoms[0].ct.astype(np.float32)
    hu[3, 10, 10] = bad
    ct = _write(hu, tmp_path / f"nan{suffix}")
    error = _case_error(CaseSpec("nan", ct), "read")
    assert re.match(_at(ct) + ": the CT holds NaN or infinite values", str(error)), str(error)


@pytest.mark.parametrize(
    ("spacing", "origin", "shape", "what"),
    [
        ((3.0, 2.0, 2.1), (0.0, 0.0, 0.0), SHAPE, "spacing"),
        (SPACING_ZYX, (0.0, 0.5, 0.0), SHAPE, "origin"),
        (SPACING_ZYX, (0.0, 0.0, 0.0), (9, 32, 32), "size"),
    ],
    ids=["spacing", "origin", "size"],
)
def test_reference_on_another_grid_is_a_geometry_error(
    phantoms: tuple[Phantom, Phantom],
    good_case: CaseSpec,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    shape: tuple[int, int, int],
    what: str,
) -> None:
    labels = phantoms[0].labels[: shape[0]]
    reference = _write(labels, good_case.ct.parent / f"ref_{what}.nii.gz", spacing, origin)
    error = _case_error(CaseSpec("grid", good_case.ct, reference), "geometry")
    assert re.match(_at(reference) + f": reference grid differs from the CT: {what}", str(error)), str(error)


def test_reference_within_the_tolerance_is_accepted(phantoms: tuple[Phantom, Phantom], good_case: CaseSpec) -> None:
    reference = _write(phantoms[0].labels, good_case.ct.parent / "nearly.mha", (3.0, 2.0, 2.0 + 1e-5), (0, 1e-4, 0))
    assert load_case(CaseSpec("nearly", good_case.ct, reference), MODEL_LABELS).labels is not None


def test_empty_reference_is_a_reference_error(good_case: CaseSpec) -> None:
    reference = _write(np.zeros(SHAPE, dtype=np.uint8), good_case.ct.parent / "empty.nii.gz")
    error = _case_error(CaseSpec("empty", good_case.ct, reference), "reference")
    assert re.match(_at(reference) + ": the reference is empty", str(error)), str(error)


@pytest.mark.parametrize(
    ("dtype", "value", "message"),
    [
        (np.uint8, 3, r": reference labels \[0, 1, 2, 3\] outside the model's 0\.\.2 \(background, lymph_nodes, spl"),
        (np.int16, -1, r": reference labels \[-1, 0, 1, 2\] outside the model's 0\.\.2"),
        (np.float32, 0.5, r": reference labels must be integers"),
        (np.float32, np.nan, r": reference labels must be integers"),
        (np.float64, np.inf, r": reference labels must be integers"),
    ],
    ids=["label-3-of-3", "negative", "fractional-float", "nan-float", "inf-float"],
)
@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_reference_labels_outside_the_model_are_reference_errors(
    phantoms: tuple[Phantom, Phantom], good_case: CaseSpec, dtype: type, value: float, message: str, suffix: str
) -> None:
    labels = phantoms[0].labels.astype(dtype)
    labels[0, 0, 0] = value
    reference = _write(labels, good_case.ct.parent / f"bad_labels{suffix}")
    error = _case_error(CaseSpec("labels", good_case.ct, reference), "reference")
    assert re.match(_at(reference) + message, str(error)), str(error)


def test_unreadable_reference_is_a_reference_error(good_case: CaseSpec) -> None:
    reference = good_case.ct.parent / "garbage.nii.gz"
    reference.write_bytes(b"not an image at all" * 50)
    error = _case_error(CaseSpec("garbage", good_case.ct, reference), "reference")
    assert re.match(_at(reference) + ": not a readable reference", str(error)), str(error)


# ---------------------------------------------------------------- DICOM: a root of series folders


def test_dicom_root_with_the_totalsegmentator_series(shared_data: Path, tmp_path: Path) -> None:
    series = shared_data / "totalsegmentator" / "example_ct_dicom"
    assert series.is_dir() and not any(p.is_dir() for p in series.iterdir()), "expected one folder of slice files"
    root = tmp_path / "dicom_root"
    root.mkdir()
    (root / "patient_17").symlink_to(series, target_is_directory=True)
    (root / "README.txt").write_text("files beside the series folders are not cases")

    specs = discover(root, cohort="abdomen")
    assert specs == [CaseSpec("patient_17", root / "patient_17", cohort="abdomen")], specs
    spec = specs[0]
    assert spec.source_kind == "dicom"

    case = load_case(spec, MODEL_LABELS)
    assert case.uids is not None, "a DICOM case must carry its UIDs"
    assert (case.uids.study, case.uids.series) == ("", ""), "the de-identified files have empty study/series UIDs"
    assert case.uids.frame_of_reference == TOTALSEG_FRAME_OF_REFERENCE
    assert case.image.GetSize() == (512, 512, 20)
    assert case.spacing_zyx == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert case.labels is None and case.reference_hash is None
    hu = sitk.GetArrayViewFromImage(case.image)
    assert hu.min() == -1024, "the CT must be in HU (rescaled)"


# ---------------------------------------------------------------- RTSTRUCT as the reference (IBSI STS_019)


@pytest.fixture(scope="module")
def ibsi_mask(shared_data: Path) -> NDArray[np.uint8]:
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data / "ibsi_sts_019" / "nifti" / "CT_mask.nii.gz")))
    return mask.astype(np.uint8)


@pytest.fixture
def ibsi_manifest_dir(shared_data: Path, tmp_path: Path) -> Path:
    """A folder for a manifest, with ``ibsi`` linking to the IBSI DICOM (``image/`` series, ``mask/RS.dcm``)."""
    (tmp_path / "ibsi").symlink_to(shared_data / "ibsi_sts_019" / "dicom" / "CT", target_is_directory=True)
    return tmp_path


def _manifest(folder: Path, ct: str, reference: str) -> Path:
    manifest = folder / "manifest.csv"
    manifest.write_text(f"case,ct,reference\nsts_019,{ct},{reference}\n")
    return manifest


@pytest.mark.parametrize(
    ("labels", "index"),
    [(("background", "GTV Mass CT"), 1), (("background", "lymph_nodes", "gtv-mass-ct"), 2)],
    ids=["one-label", "second-label"],
)
def test_rtstruct_reference_reproduces_the_nifti_mask(
    ibsi_manifest_dir: Path, ibsi_mask: NDArray[np.uint8], labels: tuple[str, ...], index: int
) -> None:
    manifest = _manifest(ibsi_manifest_dir, "ibsi/image", "ibsi/mask/RS.dcm")
    (spec,) = discover(manifest)
    assert spec.source_kind == "dicom" and spec.reference is not None and spec.reference.name == "RS.dcm"
    case = load_case(spec, labels)
    assert case.uids is not None and case.uids.study and case.uids.series and case.uids.frame_of_reference
    assert case.labels is not None and case.labels.dtype == np.uint8 and case.labels.shape == (47, 134, 136)
    expected = ibsi_mask * np.uint8(index)
    differences = int(np.count_nonzero(case.labels != expected))
    assert differences == 0, f"{differences} voxels differ from CT_mask.nii.gz (label {index})"
    assert int(np.count_nonzero(case.labels)) == 5564
    assert case.reference_hash is not None


def test_rtstruct_reference_on_a_nifti_ct(shared_data: Path, ibsi_mask: NDArray[np.uint8]) -> None:
    """Without DICOM UIDs (CT from NIfTI) the frame of reference is not checked; the grid is the same."""
    ibsi = shared_data / "ibsi_sts_019"
    spec = CaseSpec("sts", ibsi / "nifti" / "CT_image.nii.gz", ibsi / "dicom" / "CT" / "mask" / "RS.dcm")
    case = load_case(spec, ("background", "gtv_mass_ct"))
    assert case.uids is None and case.labels is not None
    np.testing.assert_array_equal(case.labels, ibsi_mask)


def test_rtstruct_without_a_matching_roi_lists_the_rois(ibsi_manifest_dir: Path) -> None:
    manifest = _manifest(ibsi_manifest_dir, "ibsi/image", "ibsi/mask/RS.dcm")
    (spec,) = discover(manifest)
    error = _case_error(spec, "reference", MODEL_LABELS)
    assert spec.reference is not None
    expected = _at(spec.reference) + rf": no ROI \({IBSI_ROI}\) matches the model's labels lymph_nodes, spleen"
    assert re.match(expected, str(error)), str(error)


def test_rtstruct_in_another_frame_of_reference_is_a_reference_error(
    ibsi_manifest_dir: Path, shared_data: Path
) -> None:
    dataset = pydicom.dcmread(shared_data / "ibsi_sts_019" / "dicom" / "CT" / "mask" / "RS.dcm")
    dataset.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = "1.2.3.4"
    for roi in dataset.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = "1.2.3.4"
    moved = ibsi_manifest_dir / "moved_rs.dcm"
    dataset.save_as(moved)
    (spec,) = discover(_manifest(ibsi_manifest_dir, "ibsi/image", "moved_rs.dcm"))
    error = _case_error(spec, "reference", ("background", IBSI_ROI))
    assert re.match(_at(moved) + rf": ROI '{IBSI_ROI}' is in frame of reference 1\.2\.3\.4", str(error)), str(error)


def test_damaged_dicom_series_is_a_read_error(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    shutil.copytree(shared_data / "ibsi_sts_019" / "dicom" / "CT" / "image", folder)
    victim = sorted(folder.iterdir())[10]
    victim.write_bytes(victim.read_bytes()[:300])
    error = _case_error(CaseSpec("damaged", folder), "read")
    assert re.match(_at(victim) + ": corrupt DICOM file", str(error)), str(error)


def test_manifest_mrn_is_stored_only_as_a_keyed_hash(tmp_path: Path) -> None:
    manifest = tmp_path / "cases.csv"
    manifest.write_text("case,ct,mrn\nc1,c1.nii.gz,123456\n", encoding="utf-8")
    with pytest.raises(ValueError, match="QA_MRN_SALT"):
        discover(manifest)
    (case,) = discover(manifest, mrn_salt="department-secret")
    assert case.mrn_hash is not None and len(case.mrn_hash) == 64 and "123456" not in case.mrn_hash
    assert discover(manifest, mrn_salt="another-secret")[0].mrn_hash != case.mrn_hash, (
        "the hash is keyed by the department's secret")


# ---------------------------------------------------------------- integrity: damaged files, geometry, series_uid


def test_truncated_ct_is_a_read_error_not_zero_slices(good_case: CaseSpec) -> None:
    """ITK reads half a .nii.gz without an error, the missing slices as zeros; the whole stream is checked."""
    data = good_case.ct.read_bytes()
    good_case.ct.write_bytes(data[: len(data) // 2])
    error = _case_error(good_case, "read")
    assert re.fullmatch(_at(good_case.ct) + ": the gzip stream ends before its end-of-stream marker "
                        r"\(truncated file\)", str(error)), str(error)


def test_ct_header_over_the_voxel_limit_is_a_read_error(good_case: CaseSpec) -> None:
    with pytest.raises(CaseError, match=r": the header declares 32x32x10 = 10240 values, over the limit of 10239"):
        load_case(good_case, MODEL_LABELS, max_voxels=10239)
    assert load_case(good_case, MODEL_LABELS, max_voxels=10240).labels is not None


def test_reference_with_flipped_direction_names_both_grids(phantoms: tuple[Phantom, Phantom],
                                                           good_case: CaseSpec) -> None:
    image = sitk.ReadImage(str(good_case.reference))
    image.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))
    sitk.WriteImage(image, str(good_case.ct.parent / "flipped.nii.gz"))
    error = _case_error(CaseSpec("flipped", good_case.ct, good_case.ct.parent / "flipped.nii.gz"), "geometry")
    assert str(error).endswith(
        ": reference grid differs from the CT: direction; reference size 32x32x10, spacing (2, 2, 3), "
        "origin (0, 0, 0), direction (1, 0, 0, 0, -1, 0, 0, 0, 1); CT size 32x32x10, spacing (2, 2, 3), "
        "origin (0, 0, 0), direction (1, 0, 0, 0, 1, 0, 0, 0, 1)"), str(error)


def test_manifest_series_uid_chooses_the_series(ibsi_manifest_dir: Path, shared_data: Path) -> None:
    """Two series in one folder: the error says to pass series_uid, and the manifest's column does."""
    folder = ibsi_manifest_dir / "two_series"
    shutil.copytree(shared_data / "ibsi_sts_019" / "dicom" / "CT" / "image", folder)
    for path in (shared_data / "rt_utils" / "mock_data").glob("ct_*.dcm"):
        shutil.copy(path, folder)
    (ambiguous,) = discover(_manifest(ibsi_manifest_dir, "two_series", ""))
    assert "pass series_uid (the batch manifest's series_uid column)" in str(_case_error(ambiguous, "read"))
    uid = str(pydicom.dcmread(shared_data / "ibsi_sts_019" / "dicom" / "CT" / "image" / "000000.dcm").SeriesInstanceUID)
    manifest = ibsi_manifest_dir / "chosen.csv"
    manifest.write_text(f"case,ct,series_uid\nsts_019,two_series,{uid}\n")
    (spec,) = discover(manifest)
    assert spec.series_uid == uid
    case = load_case(spec, MODEL_LABELS)
    assert case.uids is not None and case.uids.series == uid and case.image.GetSize() == (136, 134, 47)


def test_rtstruct_roi_clipped_to_the_image_is_noted_on_the_case(ibsi_manifest_dir: Path, shared_data: Path) -> None:
    dataset = pydicom.dcmread(shared_data / "ibsi_sts_019" / "dicom" / "CT" / "mask" / "RS.dcm")
    for contour in dataset.ROIContourSequence[0].ContourSequence:
        contour.ContourData = [f"{float(v) + (60.0 if k % 3 == 0 else 0.0):.6f}"
                               for k, v in enumerate(contour.ContourData)]
    dataset.save_as(ibsi_manifest_dir / "moved_rs.dcm")
    manifest = ibsi_manifest_dir / "clipped.csv"
    manifest.write_text("case,ct,reference,reference_note\nsts_019,ibsi/image,moved_rs.dcm,drawn by R. A.\n")
    (spec,) = discover(manifest)
    case = load_case(spec, ("background", IBSI_ROI))
    (note,) = case.reference_notes
    assert re.fullmatch(rf"ROI '{IBSI_ROI}' lies partly outside the image: \d+\.\d\d of its 17\.\d\d mL inside "
                        r"\(clipped to the image\)", note), note
    assert case.reference_note == f"drawn by R. A.; {note}"
