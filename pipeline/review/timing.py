"""Review time, measured on the server from the browser's activity reports (``review_time`` rows).

- **Item clocks**: an item's clock opens when its review starts (start or reopen, in the workflow step's own
  transaction, :class:`~pipeline.review.service.ReviewService`) and closes at the decision.
- **Region clocks**: a region opened in the slice browser (from the worklist's region list) has a clock of its
  own: which region (case, configuration, structure, rank, budget), when it was opened, how long it was worked on.
- **Activity**: the browser reports activity (focus, keys, pointer, wheel; ``assets/review_activity.js``) at most
  once per report interval while the page has focus and was used. A report credits each of the user's open item
  clocks with the time since that clock's last activity, capped at ``idle_cap_seconds`` (a reviewer who walked
  away adds at most the cap), split evenly over the user's open item clocks (several items held at once share one
  person's time); the page's region clock, if any, gets its capped gap in full. The decision is activity too.
- **Permission**: :func:`pipeline.review.workflow.may_record_time` (the owner): a user whose role may review, on an
  item nobody else reviews, or on an item of a case it reads in an open review study (an opened reading, under the
  study's configuration: :func:`reads_case`); a report only ever credits the reporting user's own clocks.
- **Study readings**: a reading's first opening (:meth:`pipeline.review.study.StudyOperations.open_study_case`)
  opens the reader's clock on each of the case's items (:func:`open_reading_clocks`), whoever reviews them, so a
  reading is timed from its opening until the reader decides, for the first reader of a case and the second alike.
  A user holds one clock per item: starting or reopening an item whose clock is open keeps that clock.
- **Ticks**: a region counts as looked at once it has a region clock (:func:`opened_regions`): the worklist ticks it.
- **Measured items**: an item whose clock closed with active time and a flagged volume; its rate is its active
  seconds over its flagged mL. :meth:`TimingOperations.review_rate` turns the department's measured items into the
  rate in force (:func:`pipeline.metrics.review_budget.review_rate`, the rule's owner).

Activity reports are not audited (they change no review state); a refused report is, as ``denied``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from pipeline.errors import NotFoundError
from pipeline.metrics.review_budget import ReviewRate, review_rate
from pipeline.review.base import Principal, ServiceBase, utc
from pipeline.review.workflow import Actor, ItemState, PermissionDenied, State, may_record_time
from pipeline.settings import ReviewSettings
from pipeline.store.review_schema import ReviewItem, ReviewTime, User
from pipeline.store.study_schema import Study, StudyAssignment

#: a region of the worklist: (image id, configuration id, class index, rank, budget fraction rounded to 6 places)
RegionKey = tuple[int, int, int, int, float]


def _credit(clocks: Iterable[ReviewTime], now: datetime, cap: float, share: int) -> None:
    """Add each clock's gap since its last activity, capped at ``cap`` seconds, divided by ``share``."""
    for clock in clocks:
        gap = (now - utc(clock.last_active_at)).total_seconds()
        clock.seconds = (clock.seconds or 0.0) + max(0.0, min(gap, cap)) / share
        clock.last_active_at = now


def _open_items(session: Session, user_id: int) -> list[ReviewTime]:
    return list(session.scalars(select(ReviewTime).where(
        ReviewTime.user_id == user_id, ReviewTime.region_rank.is_(None), ReviewTime.closed_at.is_(None))))


def _open_clock(session: Session, key: tuple[int, int, int], user_id: int, now: datetime, flagged_ml: float | None
                ) -> None:
    """Open ``user_id``'s clock on the item ``key`` (image, configuration, class index), unless one is open: then
    that one runs on, with ``flagged_ml`` noted when it had none."""
    image_id, configuration_id, class_index = key
    running = session.scalar(select(ReviewTime).where(
        ReviewTime.user_id == user_id, ReviewTime.image_id == image_id, ReviewTime.configuration_id == configuration_id,
        ReviewTime.class_index == class_index, ReviewTime.region_rank.is_(None), ReviewTime.closed_at.is_(None)))
    if running is None:
        session.add(ReviewTime(image_id=image_id, configuration_id=configuration_id, class_index=class_index,
                               user_id=user_id, flagged_ml=flagged_ml, opened_at=now, last_active_at=now, seconds=0.0))
    elif running.flagged_ml is None:
        running.flagged_ml = flagged_ml


def open_item_clock(session: Session, item: ReviewItem, user_id: int, now: datetime, flagged_ml: float | None
                    ) -> None:
    """Start timing ``item`` for ``user_id`` (its review just started), with its flagged volume (mL) when known (an
    open clock of the user on the item, a study reading's, runs on)."""
    _open_clock(session, (item.image_id, item.configuration_id, item.class_index), user_id, now, flagged_ml)


def reads_case(session: Session, user_id: int | None, image_id: int, configuration_id: int) -> bool:
    """Whether ``user_id`` has an opened reading of the case ``image_id`` in an open review study of the
    configuration ``configuration_id`` (:func:`~pipeline.review.workflow.may_record_time`'s exception)."""
    return user_id is not None and session.scalar(
        select(StudyAssignment.id).join(Study, Study.id == StudyAssignment.study_id)
        .where(StudyAssignment.user_id == user_id, StudyAssignment.image_id == image_id,
               StudyAssignment.opened_at.is_not(None), Study.closed_at.is_(None),
               Study.configuration_id == configuration_id).limit(1)) is not None


def open_reading_clocks(session: Session, actor: Actor, image_id: int, configuration_id: int,
                        class_indexes: Iterable[int], now: datetime) -> None:
    """A study reading's first opening: start ``actor``'s clock on each of the case's items ``class_indexes`` under
    the study's configuration (whoever reviews them: the actor reads the case) that it has none open on."""
    for class_index in class_indexes:
        _may_time(session, actor, image_id, configuration_id, class_index)
        _open_clock(session, (image_id, configuration_id, class_index), actor.user_id or 0, now, None)


def close_item_clock(session: Session, item: ReviewItem, user_id: int, now: datetime, cap: float) -> None:
    """The decision on ``item``: credit the user's open clocks (the click is activity) and close the item's."""
    clocks = _open_items(session, user_id)
    _credit(clocks, now, cap, max(1, len(clocks)))
    for clock in clocks:
        if (clock.image_id, clock.configuration_id, clock.class_index) == (
                item.image_id, item.configuration_id, item.class_index):
            clock.closed_at = now


def measured_rate(session: Session, settings: ReviewSettings) -> ReviewRate:
    """The review rate in force: the department's measured items (module docstring) through the rate rule."""
    rows = session.execute(
        select(func.sum(ReviewTime.seconds), func.max(ReviewTime.flagged_ml))
        .where(ReviewTime.region_rank.is_(None), ReviewTime.closed_at.is_not(None), ReviewTime.flagged_ml > 0)
        .group_by(ReviewTime.image_id, ReviewTime.configuration_id, ReviewTime.class_index)
        .having(func.sum(ReviewTime.seconds) > 0))
    return review_rate([seconds / flagged for seconds, flagged in rows], settings.seconds_per_ml,
                       settings.measured_items)


def opened_regions(session: Session, configuration_ids: Iterable[int]) -> dict[RegionKey, str]:
    """The regions a reviewer opened in the slice browser (a region clock exists; the worklist's tick), of
    ``configuration_ids``: (image id, configuration id, class index, rank, budget rounded to 6 places) → the first
    opening's user name."""
    rows = session.execute(
        select(ReviewTime.image_id, ReviewTime.configuration_id, ReviewTime.class_index, ReviewTime.region_rank,
               ReviewTime.budget, User.username)
        .join(User, User.id == ReviewTime.user_id)
        .where(ReviewTime.region_rank.is_not(None), ReviewTime.configuration_id.in_(list(configuration_ids)))
        .order_by(ReviewTime.opened_at.desc()))
    return {(image, configuration, class_index, int(rank), round(float(budget or 0.0), 6)): user
            for image, configuration, class_index, rank, budget, user in rows}


def _may_time(session: Session, actor: Actor, image_id: int, configuration_id: int, class_index: int) -> None:
    item = session.scalar(select(ReviewItem).where(
        ReviewItem.image_id == image_id, ReviewItem.configuration_id == configuration_id,
        ReviewItem.class_index == class_index))
    state = ItemState(State(item.state), reviewer_id=item.reviewer_id) if item else ItemState()
    another = state.reviewer_id not in (None, actor.user_id)  # only then does the study exception matter
    may_record_time(state, actor, another and reads_case(session, actor.user_id, image_id, configuration_id))


class TimingOperations(ServiceBase):
    """Activity reports, region clocks and the measured review rate (module docstring), under ``review`` (the idle
    cap, the placeholder rate and the measured-items threshold)."""

    def __init__(self, engine: Engine, *, review: ReviewSettings | None = None, **options: Any) -> None:
        super().__init__(engine, **options)
        self._review = review or ReviewSettings()

    def open_region(self, principal: Principal, image_id: int, configuration_id: int, class_index: int, rank: int,
                    budget: float, flagged_ml: float, *, ip: str | None = None) -> int:
        """Start a clock on region ``rank`` (at ``budget``, of the structure ``class_index``) of one case and
        configuration for the signed-in user; its id, for the page's activity reports."""
        def body(session: Session, actor: Actor) -> int:
            _may_time(session, actor, image_id, configuration_id, class_index)
            now = self._clock()
            clock = ReviewTime(image_id=image_id, configuration_id=configuration_id, class_index=class_index,
                               user_id=actor.user_id, region_rank=rank, budget=budget, flagged_ml=flagged_ml,
                               opened_at=now, last_active_at=now, seconds=0.0)
            session.add(clock)
            session.flush()
            return clock.id

        return self._run(principal, "review.time", "review_item", f"{image_id}/{configuration_id}/{class_index}",
                         ip, body)

    def report_activity(self, principal: Principal, region_clock: int | None = None, *, ip: str | None = None
                        ) -> None:
        """The browser saw the user working: credit the user's open item clocks and ``region_clock`` (which must be
        the user's own), each gap capped at the idle cap."""
        cap = self._review.idle_cap_seconds

        def body(session: Session, actor: Actor) -> None:
            may_record_time(ItemState(), actor)
            now = self._clock()
            clocks = _open_items(session, actor.user_id or 0)
            _credit(clocks, now, cap, max(1, len(clocks)))
            if region_clock is None:
                return
            clock = session.get(ReviewTime, region_clock)
            if clock is None or clock.region_rank is None:
                raise NotFoundError(f"there is no region clock #{region_clock}")
            if clock.user_id != actor.user_id:
                raise PermissionDenied(f"{actor.username} may not record time on another user's region clock")
            _may_time(session, actor, clock.image_id, clock.configuration_id, clock.class_index)
            _credit([clock], now, cap, 1)

        self._run(principal, "review.time", "review_time", None if region_clock is None else str(region_clock), ip,
                  body)

    def review_rate(self) -> ReviewRate:
        """The review rate in force (a read: not audited)."""
        with self._sessions() as session:
            return measured_rate(session, self._review)
