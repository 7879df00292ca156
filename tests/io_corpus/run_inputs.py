"""Bad inputs to ``python -m pipeline run`` and ``predict`` other than DICOM: cohort sources, model sets, settings
(exit code 2, nothing stored) and damaged image files (the case fails: exit code 1, one ``case_failures`` row)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from tests.io_corpus.build import (
    DEMO_MANIFEST,
    Bad,
    Inputs,
    edit_gzip,
    flip_byte,
    forge_nifti_dims,
    truncate,
    write_image,
)

CHECKPOINT = "Dataset501_TMLIPhantom/nnUNetTrainerTinyCPU__nnUNetPlans__3d_tiny/fold_1/checkpoint_final.pth"
DATASET = "Dataset501_TMLIPhantom/nnUNetTrainerTinyCPU__nnUNetPlans__3d_tiny/dataset.json"
LIMIT = r"over the limit of 2147483648 \(QA_MAX_VOXELS\)"


def _run(source: Path) -> list[str]:
    return ["run", str(source), "--models", str(DEMO_MANIFEST), "--no-tta", "--no-progress"]


def _source(inputs: Inputs, name: str, text: str | bytes) -> list[str]:
    """``run`` over a manifest (or other file) with this content."""
    path = inputs.folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return _run(path)


def _models(inputs: Inputs, damage) -> list[str]:
    """``run`` of the good phantom with a copy of the demo models damaged by ``damage(manifest)``."""
    manifest = inputs.models()
    damage(manifest)
    return inputs.run(inputs.good.phantom[0], models=manifest)


def _manifest_rows(edit):
    def damage(manifest: Path) -> None:
        document = json.loads(manifest.read_text())
        edit(document)
        manifest.write_text(json.dumps(document))

    return damage


def _ct(inputs: Inputs, damage, source: Path | None = None) -> list[str]:
    """``run`` of a case whose CT is a copy of ``source`` (the phantom CT) damaged by ``damage``."""
    ct = damage(inputs.copy(source or inputs.good.phantom[0]))
    return inputs.run(ct)


def _reference(inputs: Inputs, damage) -> list[str]:
    """``run`` of the phantom with a copy of its reference damaged by ``damage``."""
    return inputs.run(inputs.good.phantom[0], damage(inputs.copy(inputs.good.phantom[1])))


def _regridded(inputs: Inputs, change) -> list[str]:
    image = sitk.ReadImage(str(inputs.good.phantom[1]))
    change(image)
    path = inputs.folder / "regridded.nii.gz"
    sitk.WriteImage(image, str(path))
    return inputs.run(inputs.good.phantom[0], path)


def _labels(inputs: Inputs, array: np.ndarray, name: str = "labels.nii.gz") -> list[str]:
    return inputs.run(inputs.good.phantom[0], write_image(array, inputs.folder / name))


def _as_format(inputs: Inputs, suffix: str, compress: bool = False) -> Path:
    path = inputs.folder / f"ct{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(inputs.good.phantom[0])), str(path), useCompression=compress)
    return path


def _cohort_folder(inputs: Inputs) -> list[str]:
    (inputs.folder / "cohort" / "images").mkdir(parents=True)
    return _run(inputs.folder / "cohort")


def _float_ct(inputs: Inputs) -> Path:
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(inputs.good.phantom[0]))).astype(np.float32)
    hu[3, 10, 10] = np.nan
    return write_image(hu, inputs.folder / "nan_ct.nii.gz")


def _temperatures(inputs: Inputs, text: str) -> list[str]:
    path = inputs.folder / "t.json"
    path.write_text(text)
    return _predict(inputs, inputs.good.phantom[0], "--temperatures", str(path))


def _predict(inputs: Inputs, ct: Path, *extra: str, models: Path = DEMO_MANIFEST) -> list[str]:
    return ["predict", "--models", str(models), "--ct", str(ct), "--out", str(inputs.folder / "out"), *extra]


def _flip_checkpoint(manifest: Path) -> None:
    flip_byte(manifest.parent / CHECKPOINT, 700_000)


#: the digest the demo manifest records for CHECKPOINT (read, so that retrained demo models keep the corpus true)
RECORDED_SHA = next(c["sha256"] for c in json.loads(DEMO_MANIFEST.read_text())["checkpoints"]
                    if c["path"] == CHECKPOINT)
_SHA = r"sha256 [0-9a-f]{64} differs from " + RECORDED_SHA + " recorded in "
_REFUSED = r"; the checkpoint is damaged or was replaced, refused before loading"

RUN = [
    # ---- the cohort source (exit 2, nothing stored)
    Bad("run-source-missing", "run", lambda i: _run(i.folder / "absent"),
        r".*/absent: not a CSV manifest, a cohort folder or a folder of DICOM series"),
    Bad("run-manifest-without-header", "run", lambda i: _source(i, "m.csv", "a,b\n1,2\n"),
        r".*/m\.csv: a manifest needs a header with at least the columns case, ct"),
    Bad("run-manifest-without-cases", "run", lambda i: _source(i, "m.csv", "case,ct\n"),
        r".*/m\.csv: the manifest lists no case"),
    Bad("run-manifest-duplicate-case", "run", lambda i: _source(i, "m.csv", "case,ct\na,x.nii.gz\na,y.nii.gz\n"),
        r".*/m\.csv: duplicate case names \['a'\]"),
    Bad("run-manifest-empty-ct", "run", lambda i: _source(i, "m.csv", "case,ct\na,\n"),
        r".*/m\.csv:2: case and ct must not be empty"),
    Bad("run-manifest-binary", "run", lambda i: _source(i, "m.csv", b"\xff\xfe\x00garbage\x81\x82"),
        r".*/m\.csv: not a readable CSV manifest \(.*\)"),
    Bad("run-manifest-mrn-without-salt", "run", lambda i: _source(i, "m.csv", "case,ct,mrn\na,x.nii.gz,123\n"),
        r".*/m\.csv: the manifest gives an mrn; set QA_MRN_SALT .*"),
    Bad("run-empty-cohort-folder", "run", _cohort_folder,
        r".*/cohort: no case found \(images/ holds no \.nii\.gz, \.nii, \.mha, \.mhd, \.nrrd file\)"),
    Bad("run-empty-dicom-root", "run", lambda i: _run(i.folder),
        r".*: no case found \(no images/ folder and no subfolder of DICOM series\)"),
    Bad("run-budget-above-1", "run", lambda i: [*i.run(i.good.phantom[0]), "--budget", "2"],
        r"--budget must be in \[0, 1\], got 2\.0"),
    # ---- the model set (exit 2, nothing stored)
    Bad("run-models-missing", "run", lambda i: i.run(i.good.phantom[0], models=i.folder / "absent.json"),
        r".*/absent\.json: missing"),
    Bad("run-models-not-json", "run", lambda i: _models(i, lambda m: m.write_text("{not json")),
        r".*/models/manifest\.json: not readable JSON \(.*\)"),
    Bad("run-models-checkpoint-flipped-byte", "run", lambda i: _models(i, _flip_checkpoint),
        r".*/models/" + CHECKPOINT + ": " + _SHA + r".*/models/manifest\.json" + _REFUSED),
    Bad("run-models-checkpoint-truncated", "run", lambda i: _models(i, lambda m: truncate(m.parent / CHECKPOINT)),
        r".*/models/" + CHECKPOINT + ": " + _SHA + r".*/models/manifest\.json" + _REFUSED),
    Bad("run-models-checkpoint-missing", "run", lambda i: _models(i, lambda m: (m.parent / CHECKPOINT).unlink()),
        r".*/models/" + CHECKPOINT + ": checkpoint missing"),
    Bad("run-models-sha256-malformed", "run", lambda i: _models(i, _manifest_rows(
        lambda d: d["checkpoints"][0].update(sha256="abc"))),
        r".*/models/manifest\.json: checkpoint .*fold_0/checkpoint_final\.pth needs a 64-digit sha256, got 'abc'"),
    Bad("run-models-rows-not-objects", "run", lambda i: _models(i, _manifest_rows(
        lambda d: d.update(checkpoints=[1, 2]))),
        r".*/models/manifest\.json: every row of 'checkpoints' needs a 'path'"),
    Bad("run-models-fold-not-a-number", "run", lambda i: _models(i, _manifest_rows(
        lambda d: d["checkpoints"][0].update(fold="zero"))),
        r".*/models/manifest\.json: every DE checkpoint needs an integer 'fold'"),
    Bad("run-models-dataset-without-labels", "run", lambda i: _models(
        i, lambda m: (m.parent / DATASET).write_text(json.dumps({"name": "x"}))),
        r".*/models/" + DATASET.replace(".", r"\.") + ": dataset\\.json has no 'labels'"),
    Bad("run-model-set-json-folds-text", "run", lambda i: i.run(i.good.phantom[0], models=_model_set_json(
        i, {"results_folder": "x", "folds": "01"})),
        r".*/set\.json: model_set 'folds' must be a list of names, got '01'"),
    # ---- the settings (exit 2, nothing stored)
    Bad("env-artifacts-dir-is-a-file", "run", lambda i: i.run(i.good.phantom[0]),
        r"QA_ARTIFACTS_DIR /etc/hostname/artifacts: cannot write there \(Not a directory\)",
        env={"QA_ARTIFACTS_DIR": "/etc/hostname/artifacts"}),
    Bad("env-database-url-not-a-url", "run", lambda i: i.run(i.good.phantom[0]),
        r"QA_DATABASE_URL='not a url' is not a database URL .*", env={"QA_DATABASE_URL": "not a url"}),
    Bad("env-database-not-migrated", "run", lambda i: i.run(i.good.phantom[0]),
        r"the store sqlite:///.*/empty\.sqlite3 is empty, the code needs .*: run `alembic upgrade head` .*",
        env={"QA_DATABASE_URL": "sqlite:///{folder}/empty.sqlite3"}),
    Bad("env-database-unreachable", "run", lambda i: i.run(i.good.phantom[0]),
        r"cannot open the store postgresql\+psycopg://nobody@127\.0\.0\.1:1/none: .*Connection refused",
        env={"QA_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}),
    Bad("env-database-folder-is-a-file", "run", lambda i: i.run(i.good.phantom[0]),
        r"cannot create the folder of the store sqlite:////etc/hostname/qa\.sqlite3: File exists \(/etc/hostname\)",
        env={"QA_DATABASE_URL": "sqlite:////etc/hostname/qa.sqlite3"}),
    Bad("migrate-database-unreachable", "migrate", lambda i: ["migrate"],
        r"cannot open the store postgresql\+psycopg://nobody@127\.0\.0\.1:1/none: connection failed: .*",
        env={"QA_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}),
    Bad("run-model-set-json-sha256-differs", "run", lambda i: i.run(i.good.phantom[0], models=_model_set_json(i, {
        "results_folder": str(DEMO_MANIFEST.parent / CHECKPOINT.split("/fold_")[0]), "folds": [1],
        "sha256": {str(DEMO_MANIFEST.parent / CHECKPOINT): "0" * 64}})),
        r".*/" + CHECKPOINT + r": sha256 " + RECORDED_SHA + r" differs "
        r"from 0{64} recorded in .*/set\.json" + _REFUSED),
    Bad("env-max-voxels-text", "run", lambda i: i.run(i.good.phantom[0]),
        r"QA_MAX_VOXELS='lots' is not a number", env={"QA_MAX_VOXELS": "lots"}),
    Bad("env-max-voxels-zero", "run", lambda i: i.run(i.good.phantom[0]),
        r"QA_MAX_VOXELS='0' must be a whole number >= 1", env={"QA_MAX_VOXELS": "0"}),
    # ---- the CT file (the case fails at "read")
    Bad("run-ct-nifti-half-the-file", "run", lambda i: _ct(i, truncate, i.good.shared / "totalsegmentator" /
                                                        "example_ct_sm.nii.gz"),
        r".*/example_ct_sm\.nii\.gz: the gzip stream ends before its end-of-stream marker \(truncated file\)",
        exit_code=1, stage="read"),
    Bad("run-ct-nifti-crc", "run", lambda i: _ct(i, lambda p: flip_byte(p, -6)),
        r".*/ct\.nii\.gz: corrupt gzip stream \(CRC check failed .*\)", exit_code=1, stage="read"),
    Bad("run-ct-nifti-data-short", "run", lambda i: _ct(i, lambda p: edit_gzip(p, lambda d: d[:-2048])),
        r".*/ct\.nii\.gz: the NIfTI header declares 32x32x12 voxels of 16 bits \(24576 bytes after offset 352\), "
        r"the file holds 22528 \(truncated\)", exit_code=1, stage="read"),
    Bad("run-ct-nii-uncompressed-truncated", "run", lambda i: inputs_run(i, truncate(_as_format(i, ".nii"))),
        r".*/ct\.nii: the NIfTI header declares 32x32x12 voxels of 16 bits \(24576 bytes after offset 352\), "
        r"the file holds 12112 \(truncated\)", exit_code=1, stage="read"),
    Bad("run-ct-nifti-huge-header", "run", lambda i: _ct(i, lambda p: edit_gzip(
        p, forge_nifti_dims((20000, 20000, 20000)))),
        r".*/ct\.nii\.gz: the header declares 20000x20000x20000 = 8000000000000 values, " + LIMIT,
        exit_code=1, stage="read"),
    Bad("run-ct-random-bytes", "run", lambda i: inputs_run(i, _random(i, "ct.nii.gz")),
        r".*/ct\.nii\.gz: not a readable CT \(.*\)", exit_code=1, stage="read"),
    Bad("run-ct-zero-bytes", "run", lambda i: inputs_run(i, _random(i, "ct.nii.gz", 0)),
        r".*/ct\.nii\.gz: not a readable CT \(.*\)", exit_code=1, stage="read"),
    Bad("run-ct-missing", "run", lambda i: inputs_run(i, i.folder / "absent.nii.gz"),
        r".*/absent\.nii\.gz: no such file or folder", exit_code=1, stage="read"),
    Bad("run-ct-is-4d", "run", lambda i: inputs_run(i, i.good.probs_nii),
        r".*/probs\.nii\.gz: a CT must be a 3-D single-channel image, got 4-D", exit_code=1, stage="read"),
    Bad("run-ct-with-nan", "run", lambda i: inputs_run(i, _float_ct(i)),
        r".*/nan_ct\.nii\.gz: the CT holds NaN or infinite values", exit_code=1, stage="read"),
    Bad("run-ct-mha-truncated", "run", lambda i: inputs_run(i, truncate(_as_format(i, ".mha"), 0.7)),
        r".*/ct\.mha: not a readable CT \(.*\)", exit_code=1, stage="read"),
    Bad("run-ct-nrrd-compressed-truncated", "run", lambda i: inputs_run(i, truncate(_as_format(i, ".nrrd", True), 0.7)),
        r".*/ct\.nrrd: not a readable CT \(.*\)", exit_code=1, stage="read"),
    Bad("run-ct-over-a-small-limit", "run", lambda i: i.run(i.good.phantom[0]),
        r".*/ct\.nii\.gz: the header declares 32x32x12 = 12288 values, over the limit of 10000 \(QA_MAX_VOXELS\)",
        exit_code=1, stage="read", env={"QA_MAX_VOXELS": "10000"}),
    Bad("run-ct-file-with-series-uid", "run", lambda i: i.run(i.good.phantom[0], series_uid="1.2.3"),
        r".*/ct\.nii\.gz: series_uid 1\.2\.3 chooses among the series of a DICOM folder, this is a file",
        exit_code=1, stage="read"),
    # ---- the reference file
    Bad("run-reference-truncated", "run", lambda i: _reference(i, truncate),
        r".*/reference\.nii\.gz: the gzip stream ends before its end-of-stream marker \(truncated file\)",
        exit_code=1, stage="reference"),
    Bad("run-reference-crc", "run", lambda i: _reference(i, lambda p: flip_byte(p, -7)),
        r".*/reference\.nii\.gz: corrupt gzip stream \(CRC check failed .*\)", exit_code=1, stage="reference"),
    Bad("run-reference-huge-header", "run", lambda i: _reference(i, lambda p: edit_gzip(p, forge_nifti_dims(
        (30000, 30000, 30000)))), r".*/reference\.nii\.gz: the header declares 30000x30000x30000 = "
        r"27000000000000 values, " + LIMIT, exit_code=1, stage="reference"),
    Bad("run-reference-garbage", "run", lambda i: i.run(i.good.phantom[0], _random(i, "ref.nii.gz")),
        r".*/ref\.nii\.gz: not a readable reference \(.*\)", exit_code=1, stage="reference"),
    Bad("run-reference-flipped-direction", "run", lambda i: _regridded(i, lambda im: im.SetDirection(
        (-1, 0, 0, 0, -1, 0, 0, 0, 1))),
        r".*/regridded\.nii\.gz: reference grid differs from the CT: direction; reference size 32x32x12, "
        r"spacing \(2, 2, 3\), origin \(0, 0, 0\), direction \(-1, 0, 0, 0, -1, 0, 0, 0, 1\); CT size 32x32x12, "
        r"spacing \(2, 2, 3\), origin \(0, 0, 0\), direction \(1, 0, 0, 0, 1, 0, 0, 0, 1\)",
        exit_code=1, stage="geometry"),
    Bad("run-reference-shifted-origin", "run", lambda i: _regridded(i, lambda im: im.SetOrigin((0.0, 0.0, 1.5))),
        r".*/regridded\.nii\.gz: reference grid differs from the CT: origin; reference .*origin \(0, 0, 1\.5\).*; "
        r"CT .*origin \(0, 0, 0\).*", exit_code=1, stage="geometry"),
    Bad("run-reference-other-spacing", "run", lambda i: _regridded(i, lambda im: im.SetSpacing((2.0, 2.0, 3.01))),
        r".*/regridded\.nii\.gz: reference grid differs from the CT: spacing; reference .*spacing \(2, 2, 3\.01\).*",
        exit_code=1, stage="geometry"),
    Bad("run-reference-other-size", "run", lambda i: _labels(i, i.good.labels[:-1]),
        r".*/labels\.nii\.gz: reference grid differs from the CT: size; reference size 32x32x11, .*; CT size "
        r"32x32x12, .*", exit_code=1, stage="geometry"),
    Bad("run-reference-empty", "run", lambda i: _labels(i, np.zeros_like(i.good.labels)),
        r".*/labels\.nii\.gz: the reference is empty \(no foreground voxel\)", exit_code=1, stage="reference"),
    Bad("run-reference-label-3", "run", lambda i: _labels(i, np.where(i.good.labels == 2, 3, i.good.labels)),
        r".*/labels\.nii\.gz: reference labels \[0, 1, 3\] outside the model's 0\.\.2 .*", exit_code=1,
        stage="reference"),
    Bad("run-reference-fractional", "run", lambda i: _labels(i, i.good.labels + np.float32(0.5)),
        r".*/labels\.nii\.gz: reference labels must be integers", exit_code=1, stage="reference"),
    Bad("run-reference-mha-truncated", "run", lambda i: i.run(i.good.phantom[0], truncate(_reference_mha(i), 0.6)),
        r".*/reference\.mha: not a readable reference \(.*\)", exit_code=1, stage="reference"),
]

PREDICT = [
    Bad("predict-checkpoint-flipped-byte", "predict", lambda i: _predict(i, i.good.phantom[0], models=_flipped(i)),
        r".*/models/" + CHECKPOINT + ": " + _SHA + r".*/models/manifest\.json" + _REFUSED),
    Bad("predict-ct-truncated", "predict", lambda i: _predict(i, truncate(i.copy(i.good.phantom[0]))),
        r".*/ct\.nii\.gz: the gzip stream ends before its end-of-stream marker \(truncated file\)"),
    Bad("predict-ct-huge-header", "predict", lambda i: _predict(i, edit_gzip(i.copy(i.good.phantom[0]),
                                                                             forge_nifti_dims((9000, 9000, 9000)))),
        r".*/ct\.nii\.gz: the header declares 9000x9000x9000 = 729000000000 values, " + LIMIT),
    Bad("predict-ct-missing", "predict", lambda i: _predict(i, i.folder / "absent.nii.gz"),
        r".*/absent\.nii\.gz: no such file or folder"),
    Bad("predict-temperatures-not-json", "predict", lambda i: _temperatures(i, "{DE+TS: 1.2"),
        r".*/t\.json: not readable JSON \(.*\)"),
    Bad("predict-temperatures-negative", "predict", lambda i: _temperatures(i, '{"DE+TS": -1}'),
        r".*/t\.json: expected an object of configuration name -> temperature > 0"),
]


def inputs_run(inputs: Inputs, ct: Path) -> list[str]:
    """``run`` of a case whose CT is ``ct`` (no reference)."""
    return inputs.run(ct)


def _random(inputs: Inputs, name: str, size: int = 4000) -> Path:
    path = inputs.folder / name
    path.write_bytes(np.random.default_rng(0).bytes(size))
    return path


def _reference_mha(inputs: Inputs) -> Path:
    path = inputs.folder / "reference.mha"
    sitk.WriteImage(sitk.ReadImage(str(inputs.good.phantom[1])), str(path))
    return path


def _flipped(inputs: Inputs) -> Path:
    manifest = inputs.models()
    _flip_checkpoint(manifest)
    return manifest


def _model_set_json(inputs: Inputs, spec: dict[str, object]) -> Path:
    path = inputs.folder / "set.json"
    path.write_text(json.dumps({"model_set": spec}))
    return path
