"""no study date in the stored acquisition

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

The study date is an identifier of the patient's visit, and the store keeps only a salted hash of the hospital
number; nothing in the project reads the date. Upgrade removes the key ``study_date`` from every stored
``images.acquisition`` (a record left empty becomes NULL, as the batch stores one with nothing known). Downgrade
changes nothing: the dates are gone, and a store without them is one the older code reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IMAGES = sa.table("images", sa.column("id", sa.Integer), sa.column("acquisition", sa.JSON))


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(_IMAGES.c.id, _IMAGES.c.acquisition)
                              .where(_IMAGES.c.acquisition.is_not(None))).all()
    for image_id, acquisition in rows:
        if isinstance(acquisition, dict) and "study_date" in acquisition:
            kept = {key: value for key, value in acquisition.items() if key != "study_date"}
            connection.execute(sa.update(_IMAGES).where(_IMAGES.c.id == image_id)
                               .values(acquisition=kept or sa.null()))


def downgrade() -> None:
    """Nothing to undo: the removed dates cannot be restored, and the older code reads a record without them."""
