"""Finding a case: the cases whose name or patient pseudonym starts with what was typed, a bounded list."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from pipeline.store.schema import Image, Patient

MAX_MATCHES = 10  # shown in the search box's list; more means "type more"
ESCAPE = "\\"


@dataclass(frozen=True)
class Matches:
    """The first matches, by case name, and whether there are more than those."""

    cases: list[tuple[str, str, str]]  # (case name, patient pseudonym, cohort)
    more: bool

    def unique(self, typed: str) -> str | None:
        """The case the text names: the only match, or the case of that exact name (any capitalisation)."""
        if len(self.cases) == 1 and not self.more:
            return self.cases[0][0]
        return next((name for name, _, _ in self.cases if name.lower() == typed.strip().lower()), None)


def _like_prefix(text: str) -> str:
    """A LIKE pattern for values starting with ``text`` (its ``%``, ``_`` and the escape taken literally)."""
    escaped = text.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")
    return escaped.lower() + "%"


def find_cases(session: Session, typed: str, limit: int = MAX_MATCHES) -> Matches:
    """The cases whose name or patient pseudonym starts with ``typed`` (case-insensitive), at most ``limit``, exact
    name first, then by name; nothing for blank text."""
    typed = typed.strip()
    if not typed:
        return Matches([], False)
    pattern = _like_prefix(typed)
    rows = session.execute(
        select(Image.name, Patient.pseudonym, Image.cohort)
        .join(Patient, Patient.id == Image.patient_id)
        .where(or_(func.lower(Image.name).like(pattern, escape=ESCAPE),
                   func.lower(Patient.pseudonym).like(pattern, escape=ESCAPE)))
        .order_by((func.lower(Image.name) == typed.lower()).desc(), Image.name)
        .limit(limit + 1)).all()
    return Matches([(str(n), str(p), str(c)) for n, p, c in rows[:limit]], len(rows) > limit)
