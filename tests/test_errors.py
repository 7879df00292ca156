"""The two kinds of error: a user's mistake gets one line and exit code 2 (a 4xx on the web), an internal error a
traceback in the log and exit code 1 (500) — never reported as bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    InputError,
    NotFoundError,
    RefusedError,
    StoreNotReadyError,
    UserError,
    http_status,
    one_line,
)
from pipeline.metrics.pooling import softmax
from pipeline.metrics.results import CaseMetrics
from pipeline.settings import Settings


def _evaluate_args(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(2, 4, 8, 8)).astype(np.float32))
    labels = np.zeros((4, 8, 8), dtype=np.uint8)
    labels[1:3, 2:6, 2:6] = 1
    np.save(tmp_path / "p.npy", probs)
    np.save(tmp_path / "g.npy", labels)
    return ["evaluate", "--probs", str(tmp_path / "p.npy"), "--reference", str(tmp_path / "g.npy"),
            "--spacing", "2,1,1"]


def test_a_bug_is_an_internal_error_not_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    args = _evaluate_args(tmp_path)
    assert main(args, Settings.embedded(tmp_path)) == 0

    def broken(_self: CaseMetrics) -> dict[str, object]:
        raise ValueError("a bug deep inside")

    monkeypatch.setattr(CaseMetrics, "to_dict", broken)
    capsys.readouterr()
    assert main(args, Settings.embedded(tmp_path)) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert err == "internal error (ValueError): a bug deep inside; the traceback is above\n"
    logged = [r for r in caplog.records if r.getMessage() == "internal error"]
    assert logged and logged[-1].exc_info is not None, "the traceback goes to the log"


def test_a_store_that_is_not_ready_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings.embedded(tmp_path)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "qa.sqlite3").touch()
    code = main(["export-map", "--case", "c", "--map", "ct", "--out", str(tmp_path / "x.nii.gz")], settings)
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and err.startswith("error: the store ") and "migrate" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_malformed_setting_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QA_DATABASE_URL", "not a url")  # the process edge: main reads the environment
    assert main(["migrate"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == ("error: QA_DATABASE_URL='not a url' is not a database URL (e.g. "
                                       "sqlite:///var/qa.sqlite3 or postgresql+psycopg://user@host/db)\n")


def test_the_branches_keep_their_builtin_kinds_and_http_status() -> None:
    assert issubclass(InputError, ValueError) and issubclass(NotFoundError, LookupError)
    assert issubclass(StoreNotReadyError, RuntimeError)
    assert all(issubclass(kind, UserError) for kind in (InputError, NotFoundError, RefusedError, StoreNotReadyError))
    assert [http_status(e) for e in (InputError("x"), NotFoundError("x"), RefusedError("x"),
                                     StoreNotReadyError("x"))] == [400, 404, 403, 503]
    assert one_line(ValueError("two\nlines  here")) == "two lines here" and one_line(KeyError()) == "KeyError"
