"""Bad inputs to ``python -m pipeline evaluate``: probability maps, references and arguments (all exit code 2)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from tests.io_corpus.build import (
    Bad,
    Inputs,
    edit_gzip,
    flip_byte,
    forge_nifti_dims,
    forged_npy,
    truncate,
    write_image,
)

SPACING = ("--spacing", "3,2,2")


def _npy(inputs: Inputs, name: str, array: np.ndarray) -> Path:
    path = inputs.folder / name
    np.save(path, array)
    return path


def _labels_npy(inputs: Inputs) -> Path:
    return _npy(inputs, "labels.npy", inputs.good.labels)


def _probs(inputs: Inputs, name: str, array: np.ndarray) -> list[str]:
    """evaluate with ``array`` as .npy probabilities against the phantom labels."""
    return inputs.evaluate(_npy(inputs, name, array), _labels_npy(inputs), *SPACING)


def _reference(inputs: Inputs, name: str, array: np.ndarray, as_nifti: bool = False) -> list[str]:
    """evaluate the phantom probabilities against ``array`` as the reference."""
    path = write_image(array, inputs.folder / name) if as_nifti else _npy(inputs, name, array)
    return inputs.evaluate(inputs.good.probs_npy, path, *SPACING)


def _npz(inputs: Inputs, name: str, **arrays: np.ndarray) -> Path:
    path = inputs.folder / name
    np.savez_compressed(path, **arrays)
    return path


def _spleen(inputs: Inputs, damage_reference: bool, damage) -> list[str]:
    """evaluate TotalSegmentator's spleen map against its reference, one of them damaged by ``damage``."""
    probs, reference = inputs.good.spleen
    if damage_reference:
        reference = damage(inputs.copy(reference))
    else:
        probs = damage(inputs.copy(probs))
    return inputs.evaluate(probs, reference)


def _moved(inputs: Inputs, change) -> list[str]:
    """The spleen reference with its grid changed by ``change(image)``."""
    probs, reference = inputs.good.spleen
    image = sitk.ReadImage(str(reference))
    change(image)
    path = inputs.folder / "moved.nii.gz"
    sitk.WriteImage(image, str(path))
    return inputs.evaluate(probs, path)


def _two_members(inputs: Inputs, second) -> list[str]:
    probs, reference = inputs.good.spleen
    return inputs.evaluate([probs, second(inputs, probs)], reference)


def _shifted_member(inputs: Inputs, probs: Path) -> Path:
    image = sitk.ReadImage(str(probs))
    image.SetOrigin((0.0, 0.0, 0.0, 0.0))
    sitk.WriteImage(image, str(inputs.folder / "shifted.nii.gz"))
    return inputs.folder / "shifted.nii.gz"


def _zip_flip(inputs: Inputs) -> list[str]:
    path = _npz(inputs, "flip.npz", probabilities=inputs.good.probs)
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo("probabilities.npy").header_offset + 200
    flip_byte(path, offset)
    return inputs.evaluate(path, _labels_npy(inputs), *SPACING)


def _zip_forged(inputs: Inputs) -> list[str]:
    forged = forged_npy(inputs.folder / "probabilities.npy", (3, 2000, 2000, 2000))
    path = inputs.folder / "forged.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(forged, "probabilities.npy")
    return inputs.evaluate(path, _labels_npy(inputs), *SPACING)


GOOD = np.stack([np.full((4, 5, 6), 0.25, np.float32), np.full((4, 5, 6), 0.75, np.float32)])

EVALUATE = [
    # ---- the probability map (.npy)
    Bad("probs-missing", "evaluate", lambda i: i.evaluate(i.folder / "absent.npy", _labels_npy(i), *SPACING),
        r".*/absent\.npy: no such file"),
    Bad("probs-zero-bytes", "evaluate", lambda i: i.evaluate(_empty(i, "empty.npy"), _labels_npy(i), *SPACING),
        r".*/empty\.npy: not a \.npy file \(no NumPy header\)"),
    Bad("probs-text-as-npy", "evaluate", lambda i: i.evaluate(_text(i, "text.npy"), _labels_npy(i), *SPACING),
        r".*/text\.npy: not a \.npy file \(no NumPy header\)"),
    Bad("probs-npy-truncated", "evaluate", lambda i: i.evaluate(truncate(i.copy(i.good.probs_npy)), _labels_npy(i),
                                                                *SPACING),
        r".*/probs\.npy: the \.npy header declares \(3, 12, 32, 32\) float32 \(147456 bytes\), the file holds 73664 "
        r"bytes of data \(truncated\)"),
    Bad("probs-npy-longer", "evaluate", lambda i: i.evaluate(_appended(i.copy(i.good.probs_npy)), _labels_npy(i),
                                                             *SPACING),
        r".*/probs\.npy: the \.npy header declares \(3, 12, 32, 32\) float32 \(147456 bytes\), the file holds 147464 "
        r"bytes of data \(longer than declared\)"),
    Bad("probs-npy-header-3x2000^3", "evaluate", lambda i: i.evaluate(
        forged_npy(i.folder / "huge.npy", (3, 2000, 2000, 2000)), _labels_npy(i), *SPACING),
        r".*/huge\.npy: the header declares 3x2000x2000x2000 = 24000000000 values, over the limit of 2147483648 "
        r"\(QA_MAX_VOXELS\)"),
    Bad("probs-npy-header-negative", "evaluate", lambda i: i.evaluate(
        _raw_npy(i, "neg.npy", b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, -4, 5, 6), }"), _labels_npy(i),
        *SPACING), r".*/neg\.npy: not a readable \.npy header \(.*\)"),
    Bad("probs-npy-header-garbage", "evaluate", lambda i: i.evaluate(
        _raw_npy(i, "garbled.npy", b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4"), _labels_npy(i),
        *SPACING), r".*/garbled\.npy: not a readable \.npy header \(.*\)"),
    Bad("probs-npy-pickled-objects", "evaluate", lambda i: _probs(i, "objects.npy", np.array(
        [[[[None]]]], dtype=object)),
        r".*/objects\.npy: the \.npy array holds Python objects \(object\); pickled data is never loaded"),
    Bad("probs-3d", "evaluate", lambda i: _probs(i, "three_d.npy", i.good.probs[0]),
        r".*/three_d\.npy: probabilities must be 4-D \(C, Z, Y, X\), got shape \(12, 32, 32\)"),
    Bad("probs-5d", "evaluate", lambda i: _probs(i, "five_d.npy", i.good.probs[None]),
        r".*/five_d\.npy: probabilities must be 4-D \(C, Z, Y, X\), got shape \(1, 3, 12, 32, 32\)"),
    Bad("probs-integer", "evaluate", lambda i: _probs(i, "ints.npy", (i.good.probs > 0.5).astype(np.int32)),
        r".*/ints\.npy: probabilities must be floating point, got int32"),
    Bad("probs-complex", "evaluate", lambda i: _probs(i, "complex.npy", i.good.probs.astype(np.complex64)),
        r".*/complex\.npy: probabilities must be floating point, got complex64"),
    Bad("probs-unnormalised", "evaluate", lambda i: _probs(i, "double.npy", i.good.probs * 2),
        r"--probs .*/double\.npy against --reference .*/labels\.npy: .*must sum to 1.*"),
    Bad("probs-nan", "evaluate", lambda i: _probs(i, "nan.npy", _with(i.good.probs, (0, 1, 2, 3), np.nan)),
        r"--probs .*/nan\.npy against --reference .*/labels\.npy: .*(NaN|non-finite|finite).*"),
    Bad("probs-negative", "evaluate", lambda i: _probs(i, "negative.npy", _with(i.good.probs, (0, 1, 2, 3), -0.5)),
        r"--probs .*/negative\.npy against --reference .*/labels\.npy: .*"),
    Bad("probs-one-class", "evaluate", lambda i: _probs(i, "one_class.npy", np.ones((1, 12, 32, 32), np.float32)),
        r"--probs .*/one_class\.npy against --reference .*/labels\.npy: .*"),
    Bad("probs-wrong-shape", "evaluate", lambda i: _probs(i, "small.npy", i.good.probs[:, :6]),
        r"--probs .*/small\.npy against --reference .*/labels\.npy: labels must have the spatial shape "
        r"\(6, 32, 32\).*"),
    Bad("probs-unsupported-suffix", "evaluate", lambda i: i.evaluate(_text(i, "probs.txt"), _labels_npy(i), *SPACING),
        r".*/probs\.txt: unsupported file type \(expected \.npy, \.npz, \.nii or \.nii\.gz\)"),
    Bad("probs-folder", "evaluate", lambda i: i.evaluate(i.folder, _labels_npy(i), *SPACING), r".*: no such file"),
    # ---- nnU-Net .npz members
    Bad("npz-without-probabilities", "evaluate", lambda i: i.evaluate(
        _npz(i, "seg.npz", segmentation=i.good.labels), _labels_npy(i), *SPACING),
        r".*/seg\.npz: no 'probabilities' array \(found \['segmentation'\]\)"),
    Bad("npz-truncated", "evaluate", lambda i: i.evaluate(
        truncate(_npz(i, "cut.npz", probabilities=i.good.probs)), _labels_npy(i), *SPACING),
        r".*/cut\.npz: not a readable \.npz archive \(File is not a zip file\)"),
    Bad("npz-flipped-byte", "evaluate", _zip_flip,
        r".*/flip\.npz: not a readable \.npy header \(EOF in multi-line statement\)"),
    Bad("npz-header-3x2000^3", "evaluate", _zip_forged,
        r".*/forged\.npz: the header declares 3x2000x2000x2000 = 24000000000 values, over the limit of 2147483648 "
        r"\(QA_MAX_VOXELS\)"),
    Bad("npz-garbage", "evaluate", lambda i: i.evaluate(_text(i, "garbage.npz"), _labels_npy(i), *SPACING),
        r".*/garbage\.npz: not a readable \.npz archive \(File is not a zip file\)"),
    # ---- NIfTI probability maps (TotalSegmentator's spleen on its real grid)
    Bad("probs-nifti-truncated", "evaluate", lambda i: _spleen(i, False, truncate),
        r".*/spleen_probs\.nii\.gz: the gzip stream ends before its end-of-stream marker \(truncated file\)"),
    Bad("probs-nifti-crc", "evaluate", lambda i: _spleen(i, False, lambda p: flip_byte(p, -6)),
        r".*/spleen_probs\.nii\.gz: corrupt gzip stream \(CRC check failed .*\)"),
    Bad("probs-nifti-deflate", "evaluate", lambda i: _spleen(i, False, lambda p: flip_byte(p, 5000)),
        r".*/spleen_probs\.nii\.gz: (corrupt gzip stream \(.*\)|not a readable NIfTI image \(.*\))"),
    Bad("probs-nifti-garbage", "evaluate", lambda i: i.evaluate(_text(i, "g.nii.gz"), i.good.spleen[1]),
        r".*/g\.nii\.gz: not a readable NIfTI image \(.*\)"),
    Bad("probs-nifti-data-short", "evaluate", lambda i: _spleen(i, False, lambda p: edit_gzip(p, lambda d: d[:-4000])),
        r".*/spleen_probs\.nii\.gz: the NIfTI header declares 122x101x30x2 voxels of 32 bits \(2957280 bytes after "
        r"offset 352\), the file holds 2953280 \(truncated\)"),
    Bad("probs-nifti-data-long", "evaluate", lambda i: _spleen(i, False, lambda p: edit_gzip(
        p, lambda d: d + b"\0" * 8)),
        r".*/spleen_probs\.nii\.gz: the NIfTI header declares 122x101x30x2 voxels of 32 bits \(2957280 bytes after "
        r"offset 352\), the file holds 2957288 \(longer than declared\)"),
    Bad("probs-nifti-huge-header", "evaluate", lambda i: _spleen(i, False, lambda p: edit_gzip(
        p, forge_nifti_dims((30000, 30000, 30000)))),
        r".*/spleen_probs\.nii\.gz: the header declares 30000x30000x30000x2 = 54000000000000 values, over the limit "
        r"of 2147483648 \(QA_MAX_VOXELS\)"),
    Bad("probs-nifti-3d", "evaluate", lambda i: i.evaluate(i.good.spleen[1], i.good.spleen[1]),
        r".*/spleen\.nii\.gz: probabilities must be 4-D \(C, Z, Y, X\), got shape \(30, 101, 122\)"),
    Bad("members-other-shape", "evaluate", lambda i: _two_members(i, lambda j, p: _npy(j, "m.npy", GOOD)),
        r".*/m\.npy: shape \(2, 4, 5, 6\) differs from .*/spleen_probs\.nii\.gz's \(2, 30, 101, 122\)"),
    Bad("members-other-grid", "evaluate", lambda i: _two_members(i, _shifted_member),
        r".*/shifted\.nii\.gz: member grid differs from the probability map's \(.*/spleen_probs\.nii\.gz\): origin; "
        r"member size 122x101x30, .*origin \(0, 0, 0\).*; probabilities size 122x101x30, .*origin "
        r"\(177\.956, -11\.319, 94\.3018\).*"),
    # ---- the reference
    Bad("reference-missing", "evaluate", lambda i: i.evaluate(i.good.probs_npy, i.folder / "absent.npy", *SPACING),
        r".*/absent\.npy: no such file"),
    Bad("reference-nifti-truncated", "evaluate", lambda i: _spleen(i, True, truncate),
        r".*/spleen\.nii\.gz: the gzip stream ends before its end-of-stream marker \(truncated file\)"),
    Bad("reference-nifti-crc", "evaluate", lambda i: _spleen(i, True, lambda p: flip_byte(p, -7)),
        r".*/spleen\.nii\.gz: corrupt gzip stream \(CRC check failed .*\)"),
    Bad("reference-nifti-huge-header", "evaluate", lambda i: _spleen(i, True, lambda p: edit_gzip(
        p, forge_nifti_dims((32000, 32000, 32000)))),
        r".*/spleen\.nii\.gz: the header declares 32000x32000x32000 = 32768000000000 values, over the limit of "
        r"2147483648 \(QA_MAX_VOXELS\)"),
    Bad("reference-flipped-direction", "evaluate", lambda i: _moved(i, lambda im: im.SetDirection(
        (1, 0, 0, 0, 1, 0, 0, 0, 1))),
        r".*/moved\.nii\.gz: reference grid differs from the probability map's \(.*/spleen_probs\.nii\.gz\): "
        r"direction; reference .*direction \(1, 0, 0, 0, 1, 0, 0, 0, 1\); probabilities .*direction "
        r"\(-1, 0, 0, 0, -1, 0, 0, 0, 1\)"),
    Bad("reference-shifted-origin", "evaluate", lambda i: _moved(i, lambda im: im.SetOrigin((170.0, -11.319, 94.3))),
        r".*/moved\.nii\.gz: reference grid differs from the probability map's .*: origin; reference .*origin "
        r"\(170, -11\.319, 94\.3\).*"),
    Bad("reference-other-spacing", "evaluate", lambda i: _moved(i, lambda im: im.SetSpacing((3.0, 3.0, 2.5))),
        r".*/moved\.nii\.gz: reference grid differs from the probability map's .*: spacing; reference size "
        r"122x101x30, spacing \(3, 3, 2\.5\).*"),
    Bad("reference-other-size", "evaluate", lambda i: _reference(i, "short.npy", i.good.labels[:8]),
        r"--probs .*/probs\.npy against --reference .*/short\.npy: labels must have the spatial shape "
        r"\(12, 32, 32\).*"),
    Bad("reference-fractional", "evaluate", lambda i: _reference(i, "frac.npy", i.good.labels + np.float32(0.5)),
        r".*/frac\.npy: labels must be whole numbers, found fractional or non-finite values"),
    Bad("reference-nan", "evaluate", lambda i: _reference(
        i, "nan_ref.npy", _with(i.good.labels.astype(np.float32), (0, 1, 2), np.nan)),
        r".*/nan_ref\.npy: labels must be whole numbers, found fractional or non-finite values"),
    Bad("reference-4d", "evaluate", lambda i: _reference(i, "ref4d.npy", i.good.labels[None]),
        r".*/ref4d\.npy: labels must be 3-D \(Z, Y, X\), got shape \(1, 12, 32, 32\)"),
    Bad("reference-label-out-of-range", "evaluate", lambda i: _reference(
        i, "five.npy", _with(i.good.labels, (0, 1, 2), 5)),
        r"--probs .*/probs\.npy against --reference .*/five\.npy: .*"),
    Bad("reference-negative-label", "evaluate", lambda i: _reference(
        i, "minus.npy", _with(i.good.labels.astype(np.int16), (0, 1, 2), -1)),
        r"--probs .*/probs\.npy against --reference .*/minus\.npy: .*"),
    Bad("reference-text-dtype", "evaluate", lambda i: _reference(i, "str.npy", i.good.labels.astype("U1")),
        r".*/str\.npy: labels must be integers, got <U1"),
    Bad("reference-npy-huge-header", "evaluate", lambda i: i.evaluate(
        i.good.probs_npy, forged_npy(i.folder / "ref.npy", (40000, 40000, 40000), "|u1"), *SPACING),
        r".*/ref\.npy: the header declares 40000x40000x40000 = 64000000000000 values, over the limit of 2147483648 "
        r"\(QA_MAX_VOXELS\)"),
    Bad("reference-npy-truncated", "evaluate", lambda i: i.evaluate(
        i.good.probs_npy, truncate(_labels_npy(i), 0.7), *SPACING), r".*/labels\.npy: the \.npy header declares .*"),
    # ---- arguments
    Bad("spacing-zero", "evaluate", lambda i: i.evaluate(i.good.probs_npy, _labels_npy(i), "--spacing", "3,0,2"),
        r"argument --spacing: must be three positive numbers Z,Y,X in mm, got '3,0,2'"),
    Bad("spacing-two-numbers", "evaluate", lambda i: i.evaluate(i.good.probs_npy, _labels_npy(i), "--spacing", "3,2"),
        r"argument --spacing: must be three positive numbers Z,Y,X in mm, got '3,2'"),
    Bad("spacing-nan", "evaluate", lambda i: i.evaluate(i.good.probs_npy, _labels_npy(i), "--spacing", "nan,1,1"),
        r"argument --spacing: must be three positive numbers Z,Y,X in mm, got 'nan,1,1'"),
    Bad("spacing-missing-for-npy", "evaluate", lambda i: i.evaluate(i.good.probs_npy, _labels_npy(i)),
        r"no spacing: give --spacing Z,Y,X \(mm\) for \.npy inputs"),
    Bad("temperature-negative", "evaluate", lambda i: i.evaluate(i.good.probs_npy, _labels_npy(i), *SPACING,
                                                                 "--temperature", "-1"), r".*temperature.*"),
    Bad("temperature-nan", "evaluate", lambda i: i.evaluate(i.good.probs_npy, _labels_npy(i), *SPACING,
                                                            "--temperature", "nan"), r".*temperature.*"),
    Bad("temperature-text", "evaluate", lambda i: i.evaluate(i.good.probs_npy, _labels_npy(i), *SPACING,
                                                             "--temperature", "warm"),
        r"argument --temperature: must be a number, got 'warm'"),
    Bad("temperature-infinite", "evaluate", lambda i: i.evaluate(i.good.probs_npy, _labels_npy(i), *SPACING,
                                                                 "--temperature", "inf"),
        r"argument --temperature: must be finite and > 0, got 'inf'"),
    Bad("pooling-unknown", "evaluate", lambda i: i.evaluate(i.good.probs_npy, _labels_npy(i), *SPACING,
                                                            "--pooling", "median"),
        r"argument --pooling: invalid choice: 'median' \(choose from '?prob_mean'?, '?logit_mean'?\)"),
    Bad("json-into-missing-folder", "evaluate", lambda i: i.evaluate(i.good.probs_npy, _labels_npy(i), *SPACING,
                                                                     "--json", str(i.folder / "no" / "out.json")),
        r".*No such file or directory: '.*/no/out\.json'"),
    Bad("json-onto-a-folder", "evaluate", lambda i: i.evaluate(i.good.probs_npy, _labels_npy(i), *SPACING,
                                                               "--json", str(i.folder)),
        r".*Is a directory: '.*'"),
]


def _text(inputs: Inputs, name: str) -> Path:
    path = inputs.folder / name
    path.write_text("not an array at all, a note someone saved with the wrong name\n" * 20)
    return path


def _empty(inputs: Inputs, name: str) -> Path:
    path = inputs.folder / name
    path.write_bytes(b"")
    return path


def _appended(path: Path) -> Path:
    path.write_bytes(path.read_bytes() + b"\0" * 8)
    return path


def _raw_npy(inputs: Inputs, name: str, header: bytes) -> Path:
    padded = header + b" " * (-(len(header) + 11) % 64) + b"\n"
    path = inputs.folder / name
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(padded).to_bytes(2, "little") + padded + b"\0" * 64)
    return path


def _with(array: np.ndarray, index: tuple[int, ...], value: float) -> np.ndarray:
    changed = array.copy()
    changed[index] = value
    return changed
