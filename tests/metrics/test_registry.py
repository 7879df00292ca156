"""The metric registry: complete declarations, readable values, documented anchors, and the one place names live."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest

from pipeline.metrics import registry
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import evaluate_case
from tests.conftest import REPO_ROOT
from tests.metrics.cases import structured_case

DOCS = REPO_ROOT / "docs" / "metrics.md"
# the code that must read metric names from the registry; the metric engine (the registry, and CaseMetrics with its
# JSON keys) defines them. Migrations freeze the columns they move, tests and benchmarks spell out what they check.
CONSUMERS = ("pipeline", "qa_dashboard", "app.py")
ALLOWED = ("pipeline/metrics/", "pipeline/store/migrations/")  # migrations freeze the columns of their revision


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_declarations_are_unique_and_complete() -> None:
    names = registry.names(registry.METRICS)
    assert len(set(names)) == len(names)
    assert registry.names(registry.case_metrics()) == ("dsc_mean_fg", "ece", "brier", "nll", "ueo_auc", "fp_tp_auc",
                                                        "fn_tn_auc", "mean_entropy_roi")
    assert registry.names(registry.structure_metrics()) == ("dsc", "ece_structure", "brier_structure",
                                                             "ueo_auc_structure", "fp_tp_auc_structure",
                                                             "fn_tn_auc_structure")
    assert registry.names(registry.summary_metrics()) == ("dsc_mean_fg", "ece", "brier", "ueo_auc", "fp_tp_auc",
                                                           "fn_tn_auc")
    assert "mean_entropy_roi" not in registry.names(registry.reference_metrics())
    for metric in registry.METRICS:
        low, high = metric.range
        assert metric.label and metric.definition.endswith(".") and metric.digits >= 0
        assert high is None or low < high
        assert metric.whole_case is None or registry.metric(metric.whole_case).level == "case"
    assert registry.metric("ece").describe() == (
        "Voxel-weighted mean gap between stated confidence and observed accuracy over 15 confidence bins of the ROI "
        "voxels. Range 0–1; lower is better.")
    assert registry.metric("nll").range_text() == "≥ 0 nats"
    assert registry.metric("brier").format(0.12345) == "0.123"
    with pytest.raises(KeyError, match="no metric 'dice'"):
        registry.metric("dice")


def test_accessors_read_the_suites_numbers() -> None:
    case = structured_case(3)
    metrics = evaluate_case(case.probs, case.labels, case.spacing, MetricSettings()).metrics
    for metric in registry.case_metrics():
        value = metric.read(metrics)
        assert isinstance(value, float) and value == getattr(metrics, metric.name)
        low, high = metric.range
        assert math.isnan(value) or low <= value <= (high if high is not None else math.inf)
    for metric in registry.structure_metrics():
        per_class = metric.read(metrics)
        assert isinstance(per_class, tuple) and per_class == getattr(metrics, metric.name), metric.name
        low, high = metric.range
        assert len(per_class) == case.n_classes and all(math.isnan(v) or low <= v <= (high or math.inf)
                                                        for v in per_class), metric.name


def test_every_anchor_is_a_heading_of_the_metrics_document() -> None:
    headings = {_slug(line.lstrip("#")) for line in DOCS.read_text().splitlines() if line.startswith("#")}
    for metric in registry.METRICS:
        document, anchor = metric.anchor.split("#")
        assert document == "docs/metrics.md" and anchor in headings, metric.name


def _listed_names(path: Path, names: set[str]) -> list[tuple[int, list[str]]]:
    """(line, names) of every tuple, list, set or dict literal in ``path`` that spells out two or more metric names,
    nested literals included (a tuple of (name, label) pairs)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict):
            spelled = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and c.value in names]
            if len(spelled) >= 2:
                found.append((node.lineno, spelled))
    return found


def test_no_metric_name_list_outside_the_registry() -> None:
    names = set(registry.names(registry.METRICS))
    files = [p for c in CONSUMERS for p in ((REPO_ROOT / c).rglob("*.py") if (REPO_ROOT / c).is_dir()
                                              else [REPO_ROOT / c])]
    lists = {str(p.relative_to(REPO_ROOT)): found for p in files
             if not str(p.relative_to(REPO_ROOT)).startswith(ALLOWED) and (found := _listed_names(p, names))}
    assert lists == {}
