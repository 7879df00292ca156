"""Temperature granularities in the store: the comparison configurations and which temperature a fit applies to a
case.

Beside each TS configuration ``X+TS`` of the grid (one T per configuration), the protocol adds, when the metric
settings' ``temperature_granularities`` ask for them, ``X+TS/class`` (one T_c per class) and ``X+TS/scanner`` (one T
per scanner): TS configurations pooling the same members and views, so their uncalibrated twin is ``X``'s and their
results are computed from the same stored probabilities, on the same test cases, and stored like any configuration
(the cohort and comparison pages show them beside ``X+TS`` with the same paired statistics).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.io.acquisition import Acquisition
from pipeline.store.schema import Configuration, TemperatureFit

Scaling = float | tuple[float, ...]


def granularity_name(configuration: Configuration, granularity: str) -> str:
    """The name of ``configuration``'s comparison configuration of ``granularity`` (``DE+TS/class``)."""
    return configuration.name if granularity == "configuration" else f"{configuration.name}/{granularity}"


def granularity_configuration(configuration: Configuration, granularity: str, siblings: Sequence[Configuration]
                              ) -> Configuration:
    """The model set's configuration of ``granularity`` beside the TS configuration ``configuration`` (itself for
    ``configuration``): found among ``siblings`` or created after the last of them (the caller adds it)."""
    name = granularity_name(configuration, granularity)
    for other in siblings:
        if other.name == name:
            return other
    return Configuration(model_set_id=configuration.model_set_id, name=name,
                         position=max(c.position for c in siblings) + 1, members=list(configuration.members),
                         views=list(configuration.views), temperature_scaling=True,
                         temperature_granularity=granularity)


def scanner_of(acquisition: Mapping[str, Any] | None) -> str | None:
    """The scanner group of a stored ``images.acquisition`` (None: unknown)."""
    return Acquisition.from_record(acquisition).scanner()


def applied_scaling(fit: TemperatureFit, acquisition: Mapping[str, Any] | None) -> Scaling:
    """What ``fit`` applies to a case with this stored acquisition: the vector (``class``), the case's scanner's own
    T or else the pooled T (``scanner``), T (``configuration``)."""
    if fit.granularity == "class":
        return tuple(float(t) for t in fit.temperatures)
    if fit.granularity == "scanner":
        group = (fit.temperatures or {}).get(scanner_of(acquisition) or "", {})
        return float(group.get("temperature") or fit.temperature)
    return fit.temperature


def result_scaling(fit: TemperatureFit | None, temperature: float | None) -> Scaling | None:
    """The temperature a stored result was scored with: its row's ``temperature`` (None: uncalibrated), or a
    class-wise fit's vector (that row's ``temperature`` is None: no one scalar was applied)."""
    if fit is not None and fit.granularity == "class":
        return tuple(float(t) for t in fit.temperatures)
    return temperature


def recorded_temperature(scaling: Scaling) -> float | None:
    """What ``case_results.temperature`` records of an applied scaling: the scalar T, None for a class-wise vector
    (its fit holds it: :func:`result_scaling`)."""
    return None if isinstance(scaling, tuple) else scaling
