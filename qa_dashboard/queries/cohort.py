"""The cohort and comparison pages' protocol list, reference-kind counts and unreferenced-case note, and the paired
comparison of two configurations per case (``paired_comparison``). The cohort numbers themselves (table, curves,
reliability bins of a :class:`~pipeline.store.cohort_numbers.CohortFilter`) are ``pipeline.store.cohort_numbers``'s,
shared with the audit report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.errors import NotFoundError
from pipeline.metrics.cohort import PairedComparison, paired_comparison
from pipeline.review.worklist import NO_REFERENCE
from pipeline.store.references import FINAL_CLINICAL, RESEARCH, reference_kind_is
from pipeline.store.schema import Image, ModelSet, Processing, Protocol, SplitRole
from pipeline.store.strata import UNKNOWN_GROUP, group_counts, image_groups


@dataclass(frozen=True)
class ProtocolInfo:
    """A protocol as the filters list it."""

    id: int
    model_set_id: int
    model_set: str
    cohort: str
    repeats: int
    seed: int
    test_fraction: float
    created_at: datetime
    labels: tuple[str, ...]

    @property
    def label(self) -> str:
        return (f"{self.cohort} · {self.repeats} repeats · seed {self.seed} · {self.model_set} · "
                f"{self.created_at:%Y-%m-%d}")



def protocols(session: Session) -> list[ProtocolInfo]:
    """Every protocol, newest first."""
    rows = session.execute(
        select(Protocol, ModelSet).join(ModelSet, ModelSet.id == Protocol.model_set_id)
        .order_by(Protocol.created_at.desc(), Protocol.id.desc())
    )
    return [ProtocolInfo(p.id, m.id, m.name, p.cohort, p.repeats, p.seed, p.test_fraction, p.created_at,
                         tuple(m.labels)) for p, m in rows]


def protocol(session: Session, protocol_id: int) -> ProtocolInfo:
    """One protocol; LookupError when it is gone."""
    found = next((p for p in protocols(session) if p.id == protocol_id), None)
    if found is None:
        raise NotFoundError(f"there is no protocol {protocol_id}")
    return found


def unreferenced_note(session: Session, model_set_id: int | None = None) -> str:
    """The cases processed (by the model set, when given) that have no reference yet, counted and named: they are in
    no protocol, so no cohort number counts them; empty when there are none."""
    query = (select(Image.name).join(Processing, Processing.image_id == Image.id)
             .where(Image.reference_hash.is_(None)).distinct().order_by(Image.name))
    if model_set_id is not None:
        query = query.where(Processing.model_set_id == model_set_id)
    names = list(session.scalars(query))
    if not names:
        return ""
    shown = ", ".join(names[:20]) + (f", … ({len(names) - 20} more)" if len(names) > 20 else "")
    return (f"{len(names)} case(s) with {NO_REFERENCE}, counted in no number of this page (their reference metrics "
            f"wait for a reference; the worklist and the patient page show their label-free scores): {shown}")



def reference_kind_counts(session: Session, protocol_id: int) -> dict[str, int]:
    """The protocol's cases by reference kind: ``final_clinical`` and ``research`` (distinct images)."""
    cases = select(SplitRole.image_id).where(SplitRole.protocol_id == protocol_id).distinct().subquery()
    return {kind: int(session.scalar(select(func.count()).select_from(cases).where(
        reference_kind_is(kind, cases.c.image_id))) or 0) for kind in (FINAL_CLINICAL, RESEARCH)}



def acquisition_counts(session: Session, protocol_id: int, key: str) -> dict[str, int]:
    """The protocol's cases per group of the stratum ``key`` (:mod:`pipeline.store.strata`; ``unknown`` last)."""
    cases = select(SplitRole.image_id).where(SplitRole.protocol_id == protocol_id).distinct()
    return group_counts(image_groups(session, key, cases))


def per_case(cases: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each test case's mean over the repeats it was tested in: one column per configuration id."""
    return cases.pivot_table(index="case", columns="configuration_id", values=metric, aggfunc="mean")


def paired(cases: pd.DataFrame, metric: str, a: int, b: int) -> tuple[PairedComparison, pd.DataFrame]:
    """A minus B on ``metric`` over the cases both have (per-case means over repeats), and those cases' values."""
    table = per_case(cases, metric)
    if a not in table.columns or b not in table.columns:
        return paired_comparison(np.array([]), np.array([])), pd.DataFrame(columns=["case", "a", "b"])
    both = table[[a, b]].dropna()
    both.columns = ["a", "b"]
    return paired_comparison(both["a"].to_numpy(), both["b"].to_numpy()), both.reset_index()


def paired_by_group(cases: pd.DataFrame, metric: str, a: int, b: int, groups: dict[int, str]
                    ) -> dict[str, PairedComparison]:
    """:func:`paired` within each acquisition group (``groups``: image id → group; groups by name, ``unknown``
    last)."""
    _, both = paired(cases, metric, a, b)
    images = cases.drop_duplicates("case").set_index("case")["image_id"]
    of_case = both["case"].map(images).map(groups)
    return {str(group): paired_comparison(both.loc[of_case == group, "a"].to_numpy(),
                                          both.loc[of_case == group, "b"].to_numpy())
            for group in sorted(set(of_case.dropna()), key=lambda g: (g == UNKNOWN_GROUP, g))}
