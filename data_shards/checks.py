"""Range checks for config dataclasses whose message names each offending key with its value
(``data.batch_size=-4: must be at least 0 (0: no limit)``), raised as ValueError from ``__post_init__``."""

from __future__ import annotations


def at_least(config, section: str, minimum: float, *names: str, note: str = "") -> None:
    """ValueError naming every field of ``names`` below ``minimum``."""
    _refuse(config, section, [n for n in names if getattr(config, n) < minimum], f"must be at least {minimum}", note)


def above(config, section: str, bound: float, *names: str, note: str = "") -> None:
    """ValueError naming every field of ``names`` not above ``bound``."""
    _refuse(config, section, [n for n in names if getattr(config, n) <= bound], f"must be more than {bound}", note)


def within(config, section: str, low: float, high: float, *names: str, note: str = "") -> None:
    """ValueError naming every field of ``names`` outside [low, high)."""
    bad = [n for n in names if not low <= getattr(config, n) < high]
    _refuse(config, section, bad, f"must be in [{low}, {high})", note)


def _refuse(config, section: str, bad: list[str], rule: str, note: str) -> None:
    if bad:
        given = ", ".join(f"{section}.{name}={getattr(config, name)}" for name in bad)
        raise ValueError(f"{given}: {rule}" + (f" ({note})" if note else ""))
