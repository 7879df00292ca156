"""The per-scan out-of-distribution score in the store: each result's body entropy (stored by the batch) ranked
among the same configuration's values on the in-distribution cases (:func:`pipeline.metrics.shift.ood_score`).

The in-distribution set of a model set is its calibration cohort: the cases of its ``deployed`` temperature fits
(the protocol's whole-cohort fits), those with a reference, each through its deployed result
(:mod:`pipeline.store.deployed`); a cohort case is ranked against the others, never itself. Without a protocol, or
with fewer than the settings' ``ood_min_reference`` values, a result is "not enough reference cases": percentile and
flag NULL, ``ood_reference_n`` the count found. The batch (end of a run) and the protocol (after deploying) call
:func:`refresh_ood_scores`, so every stored result is ranked against the cohort as it stands then.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.shift import ood_score
from pipeline.store.deployed import deployed_result
from pipeline.store.schema import CaseResult, Configuration, Image, TemperatureFit


def calibration_cohort(session: Session, model_set_id: int) -> set[str]:
    """The names of the cases the model set's deployed temperature fits were fitted on (empty before a protocol)."""
    lists = session.scalars(select(TemperatureFit.cases)
                            .join(Configuration, Configuration.id == TemperatureFit.configuration_id)
                            .where(Configuration.model_set_id == model_set_id, TemperatureFit.role == "deployed"))
    return {str(name) for cases in lists for name in cases or ()}


def refresh_ood_scores(session: Session, model_set_id: int, settings: MetricSettings) -> int:
    """Rank every result of the model set that has a body entropy (module description); returns how many."""
    cohort = calibration_cohort(session, model_set_id)
    rows = session.execute(
        select(CaseResult.id, CaseResult.configuration_id, Image.name, CaseResult.has_reference,
               CaseResult.ood_entropy, deployed_result().label("deployed"))
        .join(Image, Image.id == CaseResult.image_id)
        .join(Configuration, Configuration.id == CaseResult.configuration_id)
        .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
        .where(Configuration.model_set_id == model_set_id, CaseResult.ood_entropy.is_not(None))).all()
    in_distribution: dict[int, dict[str, float]] = defaultdict(dict)
    for _, configuration_id, name, has_reference, value, deployed in rows:
        if deployed and has_reference and name in cohort:
            in_distribution[configuration_id][name] = value
    updates: list[dict[str, Any]] = []
    for result_id, configuration_id, name, _, value, _ in rows:
        others = [v for case, v in in_distribution[configuration_id].items() if case != name]
        score = ood_score(value, others, settings.ood_min_reference, settings.ood_flag_percentile)
        updates.append({"id": result_id, "ood_percentile": score.percentile, "ood_reference_n": score.reference_n,
                        "ood_flag": score.flagged})
    if updates:
        session.execute(update(CaseResult), updates)
    return len(updates)


def describe_ood(percentile: float | None, reference_n: int | None, flagged: bool | None) -> str:
    """A stored score in words, for the worklist, the patient page and exports: ``out of distribution (percentile
    100 of 6 reference cases)``, ``in distribution (…)``, ``not enough reference cases (2)`` or ``not scored``
    (stored before the score existed)."""
    if reference_n is None:
        return "not scored"
    if percentile is None or flagged is None:
        return f"not enough reference cases ({reference_n})"
    verdict = "out of distribution" if flagged else "in distribution"
    return f"{verdict} (percentile {percentile:.0f} of {reference_n} reference cases)"
