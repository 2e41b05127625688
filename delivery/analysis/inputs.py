"""Strict inputs of the judges: a bad parameter raises ValueError naming it; a bad datum is a
problem naming the series (the judge answers it inconclusive), never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from delivery.analysis.evalues import DIRECTIONS, Array

# Counts above this are refused as data: beyond 2**53 a float64 no longer holds every integer.
MAX_COUNT = 1e15


def _real(name: str, value: object) -> float:
    """A parameter as a finite float, or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, not {value!r}")
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large: {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, not {value!r}")
    return v


def check_parameters(
    *,
    alpha: float,
    direction: str,
    max_effect: float,
    min_samples: float,
    pass_alpha: float | None = None,
    negligible_rate: float | None = None,
    quantile: float | None = None,
) -> None:
    """Raise ValueError naming the first bad parameter of a judge (the rules of docs/analysis.md)."""
    if not 0 < _real("alpha", alpha) < 1:
        raise ValueError(f"alpha must be in (0, 1), not {alpha!r}")
    if pass_alpha is not None and not 0 < _real("pass_alpha", pass_alpha) < 1:
        raise ValueError(f"pass_alpha must be in (0, 1), not {pass_alpha!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    if not _real("max_effect", max_effect) > 0:
        raise ValueError(f"max_effect must be > 0, not {max_effect!r}")
    ms = _real("min_samples", min_samples)
    if ms < 0 or ms != math.floor(ms):
        raise ValueError(f"min_samples must be a whole number >= 0, not {min_samples!r}")
    if negligible_rate is not None and not 0 <= _real("negligible_rate", negligible_rate) < 1:
        raise ValueError(f"negligible_rate must be in [0, 1), not {negligible_rate!r}")
    if quantile is not None and not 0.5 <= _real("quantile", quantile) < 1:
        raise ValueError(f"quantile must be in [0.5, 1), not {quantile!r}")


def count_windows(name: str, values: ArrayLike) -> tuple[Array | None, str]:
    """Per-window counts of one series as a 1-D array (a scalar is one window), rounded to whole
    numbers; (None, problem naming the series) for anything that is not a count."""
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except OverflowError:
        return None, f"{name} holds a count too large to judge (> {MAX_COUNT:.0e})"
    except (TypeError, ValueError):
        return None, f"{name} is not a number or a sequence of per-window numbers"
    if arr.ndim != 1:
        return None, f"{name} must be a number or a 1-D sequence of per-window counts, not shape {arr.shape}"
    if arr.size == 0:
        return None, f"no observations for {name}"
    if not np.all(np.isfinite(arr)):
        return None, f"{name} contains NaN or Inf"
    if np.any(arr < 0):
        return None, f"{name} contains negative counts"
    if np.any(arr > MAX_COUNT):
        return None, f"{name} holds a count too large to judge (> {MAX_COUNT:.0e})"
    return np.rint(arr), ""


def histogram_windows(name: str, counts: ArrayLike, bounds: Array, cumulative: bool) -> tuple[Array | None, str]:
    """Bucket counts as (W, B) per-window histograms; a 1-D array is one window."""
    try:
        arr = np.asarray(counts, dtype=np.float64)
    except OverflowError:
        return None, f"{name} holds a count too large to judge (> {MAX_COUNT:.0e})"
    except (TypeError, ValueError):
        return None, f"{name} is not an array of bucket counts (per window: all windows the same buckets)"
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != bounds.shape[0] or arr.shape[0] == 0:
        return (
            None,
            f"{name} has shape {arr.shape} but there are {bounds.shape[0]} bounds (buckets, or windows x buckets)",
        )
    if not np.all(np.isfinite(arr)):
        return None, f"{name} contains NaN or Inf"
    if np.any(arr < 0):
        return None, f"{name} contains negative counts"
    if np.any(arr > MAX_COUNT):
        return None, f"{name} holds a count too large to judge (> {MAX_COUNT:.0e})"
    if cumulative:
        # increase() on each le series separately can break monotonicity slightly
        arr = np.diff(np.maximum.accumulate(arr, axis=1), axis=1, prepend=0.0)
    return np.rint(arr), ""


def sample_windows(name: str, values: ArrayLike | Sequence[ArrayLike]) -> tuple[list[Array] | None, str]:
    """Raw latency samples: one 1-D array (one window), a 2-D array or a list of 1-D arrays (windows)."""
    try:
        if isinstance(values, list | tuple) and values and all(np.ndim(v) == 1 for v in values):
            wins = [np.asarray(v, dtype=np.float64) for v in values]
        else:
            arr = np.asarray(values, dtype=np.float64)
            if arr.ndim > 2:
                return None, f"{name} must be samples or per-window samples, not shape {arr.shape}"
            wins = list(arr) if arr.ndim == 2 else [np.atleast_1d(arr)]
    except OverflowError:
        return None, f"{name} contain a value too large to judge"
    except (TypeError, ValueError):
        return None, f"{name} are not numbers"
    for w in wins:
        if not np.all(np.isfinite(w)):
            return None, f"{name} contain NaN or Inf"
        if np.any(w < 0):
            return None, f"{name} contain negative latencies"
    return wins, ""
