"""A set of trained nnU-Net v2 members read from results folders, checked before any forward pass.

A member is one set of network weights: a fold model of the cross-validation (deep ensemble) or one checkpoint of
a single run (checkpoint ensemble). Every file is named in the error when it is missing or inconsistent. A
checkpoint whose sha256 differs from the one its manifest records (``train-demo-models``' ``checkpoints[].sha256``,
or a model-set JSON's optional ``sha256`` object) is refused before anything loads it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InputError


class ModelSetError(InputError):
    """A results folder that cannot serve as a model set; the message names the file."""


@dataclass(frozen=True)
class Member:
    """One network of the set: ``name`` is unique in the set (``fold_0``, ``ce_cycle_2``, …)."""

    name: str
    checkpoint: Path
    sha256: str


@dataclass(frozen=True)
class ModelSet:
    """Members sharing one dataset.json and plans.json (same labels, same configuration).

    Attributes:
        folder: the main results folder (``<Trainer>__<Plans>__<configuration>``).
        dataset_json, plans: as nnU-Net wrote them.
        configuration: the nnU-Net configuration name (``3d_fullres``, ``2d``, …).
        labels: class names by index, from dataset.json.
        members: every member, in a fixed order.
    """

    folder: Path
    dataset_json: dict[str, Any]
    plans: dict[str, Any]
    configuration: str
    labels: tuple[str, ...]
    members: tuple[Member, ...]

    def member(self, name: str) -> Member:
        """The member called ``name``."""
        for member in self.members:
            if member.name == name:
                return member
        raise ModelSetError(f"{self.folder}: no member named {name!r}; members: {[m.name for m in self.members]}")

    def identity(self) -> str:
        """A short hash of every member's weights and the plans: changes whenever the model set changes."""
        digest = hashlib.sha256(json.dumps(self.plans, sort_keys=True).encode())
        for member in self.members:
            digest.update(member.name.encode() + member.sha256.encode())
        return digest.hexdigest()[:16]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelSetError(f"{path}: missing")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelSetError(f"{path}: not readable JSON ({error})") from error
    if not isinstance(value, dict):
        raise ModelSetError(f"{path}: expected a JSON object")
    return value


def _sha256(path: Path) -> str:
    if not path.is_file():
        raise ModelSetError(f"{path}: checkpoint missing")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _labels(dataset_json: dict[str, Any], path: Path) -> tuple[str, ...]:
    labels = dataset_json.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ModelSetError(f"{path}: dataset.json has no 'labels'")
    by_index = {index: name for name, index in labels.items() if isinstance(index, int)}
    if len(by_index) != len(labels) or sorted(by_index) != list(range(len(by_index))):
        raise ModelSetError(f"{path}: labels must be 0..C-1 integers (region labels are not supported), got {labels}")
    return tuple(by_index[i] for i in range(len(by_index)))


def _configuration(folder: Path, plans: dict[str, Any]) -> str:
    name = folder.name.split("__")[-1]
    if name not in plans.get("configurations", {}):
        raise ModelSetError(
            f"{folder / 'plans.json'}: configuration {name!r} (from the folder name) is not in the plans; "
            f"available: {sorted(plans.get('configurations', {}))}"
        )
    return name


def _check_same_run(main: Path, other: Path, dataset_json: dict[str, Any], plans: dict[str, Any]) -> None:
    if _read_json(other / "dataset.json").get("labels") != dataset_json.get("labels"):
        raise ModelSetError(f"{other / 'dataset.json'}: labels differ from {main / 'dataset.json'}")
    other_plans = _read_json(other / "plans.json")
    if other_plans.get("configurations") != plans.get("configurations"):
        raise ModelSetError(f"{other / 'plans.json'}: configurations differ from {main / 'plans.json'}")


def load_model_set(
    folder: Path,
    folds: Sequence[int | str] = (0, 1, 2, 3, 4),
    checkpoint_name: str = "checkpoint_final.pth",
    checkpoint_run: Path | None = None,
    run_checkpoints: Sequence[str] = (),
) -> ModelSet:
    """Read a results folder's fold models and, optionally, the named checkpoints of one more run.

    Args:
        folder: ``<Trainer>__<Plans>__<configuration>`` holding dataset.json, plans.json and ``fold_<f>/``.
        folds: the folds whose ``checkpoint_name`` become members ``fold_<f>``.
        checkpoint_run: the fold folder of the checkpoint-ensemble run (e.g. ``…/fold_all``); its
            ``run_checkpoints`` become members ``ce_<stem>``. Its results folder must share labels and plans.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelSetError(f"{folder}: results folder missing")
    dataset_json = _read_json(folder / "dataset.json")
    plans = _read_json(folder / "plans.json")
    labels = _labels(dataset_json, folder / "dataset.json")
    configuration = _configuration(folder, plans)
    members = [
        Member(f"fold_{fold}", path, _sha256(path))
        for fold in folds
        for path in [folder / f"fold_{fold}" / checkpoint_name]
    ]
    if checkpoint_run is not None:
        _check_same_run(folder, checkpoint_run.parent, dataset_json, plans)
        for name in run_checkpoints:
            path = checkpoint_run / name
            members.append(Member(f"ce_{Path(name).stem.removeprefix('checkpoint_')}", path, _sha256(path)))
    if not members:
        raise ModelSetError(f"{folder}: no member chosen (no folds and no run checkpoints)")
    return ModelSet(folder, dataset_json, plans, configuration, labels, tuple(members))


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def verify_checksums(model_set: ModelSet, expected: dict[Path, str], source: Path) -> None:
    """Refuse a member whose checkpoint's sha256 differs from ``expected`` (checkpoint path → hex digest, as
    recorded in ``source``); checkpoints ``expected`` does not list are not checked."""
    recorded = {path.resolve(): digest for path, digest in expected.items()}
    for member in model_set.members:
        digest = recorded.get(member.checkpoint.resolve())
        if digest is not None and digest != member.sha256:
            raise ModelSetError(f"{member.checkpoint}: sha256 {member.sha256} differs from {digest} recorded in "
                                f"{source}; the checkpoint is damaged or was replaced, refused before loading")


def _expected_checksums(document: dict[str, Any], path: Path) -> dict[Path, str]:
    """Checkpoint path → sha256 from a model-set JSON's optional ``sha256`` object or a manifest's rows."""
    spec = document.get("model_set")
    if isinstance(spec, dict):
        listed = spec.get("sha256", {})
        if not isinstance(listed, dict):
            raise ModelSetError(f"{path}: 'sha256' must map checkpoint paths to sha256 digests")
        pairs = list(listed.items())
    else:
        pairs = [(row.get("path"), row.get("sha256")) for row in document["checkpoints"]]
    expected = {}
    for relative, digest in pairs:
        if not isinstance(digest, str) or not _SHA256.match(digest.lower()):
            raise ModelSetError(f"{path}: checkpoint {relative} needs a 64-digit sha256, got {digest!r}")
        expected[path.parent / relative] = digest.lower()
    return expected


def _spec_from_manifest(document: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """The model set of a ``train-demo-models`` manifest: its DE fold checkpoints and its CE cycle checkpoints."""
    rows = document.get("checkpoints")
    if not isinstance(rows, list):
        return None
    if not all(isinstance(row, dict) and isinstance(row.get("path"), str) for row in rows):
        raise ModelSetError(f"{path}: every row of 'checkpoints' needs a 'path'")
    folds = [row for row in rows if row.get("ensemble") == "DE"]
    cycles = [row for row in rows if row.get("ensemble") == "CE"]
    if not folds:
        raise ModelSetError(f"{path}: the manifest lists no deep-ensemble (DE) checkpoint")
    if not all(isinstance(row.get("fold"), int) for row in folds):
        raise ModelSetError(f"{path}: every DE checkpoint needs an integer 'fold'")
    first = Path(folds[0]["path"])
    spec: dict[str, Any] = {
        "results_folder": str(first.parent.parent),
        "folds": [row["fold"] for row in folds],
        "checkpoint_name": first.name,
    }
    if cycles:
        spec["checkpoint_run"] = str(Path(cycles[0]["path"]).parent)
        spec["run_checkpoints"] = [Path(row["path"]).name for row in cycles]
    return spec


def _check_spec(spec: dict[str, Any], path: Path) -> None:
    """The types of a model-set object's fields (a wrong one is named, not a TypeError deep inside)."""
    strings = {"results_folder": True, "checkpoint_name": False, "checkpoint_run": False}
    for key, required in strings.items():
        if (required or key in spec) and not (isinstance(spec.get(key), str) and spec[key]):
            raise ModelSetError(f"{path}: model_set {key!r} must be a non-empty string")
    for key, kinds in (("folds", int | str), ("run_checkpoints", str)):
        value = spec.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, kinds) for item in value):
            raise ModelSetError(f"{path}: model_set {key!r} must be a list of names, got {value!r}")


def load_model_set_file(path: Path) -> ModelSet:
    """A model set described by a ``train-demo-models`` manifest, or by a JSON file's ``model_set`` object
    (paths relative to the file), e.g.::

        {"model_set": {"results_folder": "Dataset501_X/Trainer__Plans__3d_fullres", "folds": [0, 1, 2, 3, 4],
                       "checkpoint_name": "checkpoint_final.pth",
                       "checkpoint_run": "Dataset501_X/TrainerCE__Plans__3d_fullres/fold_0",
                       "run_checkpoints": ["checkpoint_cycle_1.pth", "checkpoint_cycle_2.pth"],
                       "sha256": {"Dataset501_X/Trainer__Plans__3d_fullres/fold_0/checkpoint_final.pth": "…"}}}

    Every checkpoint's sha256 that the file records is verified (:func:`verify_checksums`) before any is loaded.
    """
    path = Path(path)
    document = _read_json(path)
    spec = document.get("model_set") or _spec_from_manifest(document, path)
    if not isinstance(spec, dict) or "results_folder" not in spec:
        raise ModelSetError(f"{path}: no 'model_set' object with a 'results_folder'")
    _check_spec(spec, path)
    root = path.parent
    run = spec.get("checkpoint_run")
    model_set = load_model_set(
        root / spec["results_folder"],
        folds=spec.get("folds", (0, 1, 2, 3, 4)),
        checkpoint_name=spec.get("checkpoint_name", "checkpoint_final.pth"),
        checkpoint_run=root / run if run else None,
        run_checkpoints=spec.get("run_checkpoints", ()),
    )
    verify_checksums(model_set, _expected_checksums(document, path), path)
    return model_set


def check_label_set(model_set: ModelSet, labels: dict[str, int], source: Path) -> None:
    """Refuse a reference whose label names/indices (e.g. from its dataset.json) differ from the models'."""
    expected = {name: index for index, name in enumerate(model_set.labels)}
    if dict(labels) != expected:
        raise ModelSetError(
            f"{source}: reference labels {dict(labels)} differ from the models' {expected} "
            f"({model_set.folder / 'dataset.json'})"
        )
