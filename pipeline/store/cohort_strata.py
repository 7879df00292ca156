"""Cohort numbers per acquisition group (:mod:`pipeline.store.strata`): the cohort page's per-scanner table.

For a :class:`~pipeline.store.cohort_numbers.CohortFilter` and a stratum, one row per (configuration, group): the
group's test cases (n), the mean over them of each case's value (its mean over the repeats it was tested in) of the
summary metrics, and its calibration against the rest: the group's mean ROI ECE minus the other cases' with a case
bootstrap CI (:func:`pipeline.metrics.statistics.group_versus_rest`); ``differs`` where that CI excludes 0.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy.orm import Session

from pipeline.metrics import registry
from pipeline.metrics.statistics import DEFAULT_STATISTICS, StatisticsSettings, group_versus_rest
from pipeline.store.cohort_numbers import CohortFilter, case_table
from pipeline.store.strata import UNKNOWN_GROUP, image_groups

CALIBRATION = "ece"  # the metric whose group-versus-rest difference flags a group
COLUMNS = ["configuration_id", "configuration", "group", "n_cases", "ece_difference", "ece_low", "ece_high",
           "differs"]


def stratified(session: Session, f: CohortFilter, key: str,
               settings: StatisticsSettings = DEFAULT_STATISTICS) -> pd.DataFrame:
    """The rows of the module's description (columns :data:`COLUMNS` and one per summary metric of the registry),
    in grid order, each configuration's groups by name with ``unknown`` last; empty when nothing counts."""
    metrics = list(registry.names(registry.summary_metrics()))
    cases = case_table(session, f)
    if cases.empty:
        return pd.DataFrame(columns=[*COLUMNS, *metrics])
    groups = image_groups(session, key, {int(i) for i in cases["image_id"]})
    cases["group"] = cases["image_id"].map(groups)
    per_case = (cases.groupby(["position", "configuration_id", "configuration", "image_id", "group"], sort=True)
                [metrics].mean().reset_index())
    rows = []
    for (_, configuration_id, configuration), own in per_case.groupby(
            ["position", "configuration_id", "configuration"], sort=True):
        differences = {d.group: d for d in group_versus_rest(own[CALIBRATION].to_numpy(), list(own["group"]),
                                                             settings)}
        for group, members in sorted(own.groupby("group"), key=lambda item: (item[0] == UNKNOWN_GROUP, item[0])):
            difference = differences.get(str(group))
            rows.append({"configuration_id": int(configuration_id), "configuration": configuration, "group": group,
                         "n_cases": int(members["image_id"].nunique()),
                         **{m: float(members[m].mean()) for m in metrics},
                         "ece_difference": difference.estimate if difference else float("nan"),
                         "ece_low": difference.low if difference else float("nan"),
                         "ece_high": difference.high if difference else float("nan"),
                         "differs": bool(difference and difference.differs)})
    return pd.DataFrame(rows, columns=[*COLUMNS, *metrics])
