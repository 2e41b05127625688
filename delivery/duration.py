"""One duration grammar for every annotation, wave file and command-line flag: the Kubernetes one.

GEP-2257, the format of Gateway API and of the official client's ``kubernetes.utils.duration``:
one to four parts, each one to five digits and a unit ``h``, ``m``, ``s`` or ``ms`` (``30s``,
``1m30s``, ``2h``, ``250ms``). No sign, no fraction, no bare number: ``90`` is refused with a hint to
write ``90s``, as ``kubectl --timeout=90`` is refused. Checked as that module checks it (the
GEP's pattern, then durationpy, the Go-duration parser it calls), without importing it: importing
anything of ``kubernetes`` loads the whole client, and the annotation schema stays offline and light
(the ``schema-offline`` import contract).
"""

from __future__ import annotations

import math
import re

import durationpy

_GEP2257 = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")  # as kubernetes.utils.duration.reDuration

FORM = "a unit is required: 30s, 1m30s, 2h, 250ms"


class DurationError(ValueError):
    """Not a duration in the Kubernetes form; the message says what to write instead."""


def seconds(text: str) -> float:
    """Seconds of ``text`` (surrounding blanks ignored); DurationError otherwise."""
    value = text.strip()
    if len(value) > 32:  # 4 parts of at most 5 digits and 2 letters: longer is never one
        raise DurationError(f"is not a duration ({FORM})")
    if _GEP2257.match(value):
        return float(durationpy.from_str(value).total_seconds())
    if value.isdigit():
        raise DurationError(f"is not a duration: add a unit, e.g. {value}s ({FORM})") from None
    if _is_number(value):
        raise DurationError(f"is not a duration: no fractions, use a smaller unit, e.g. 1500ms ({FORM})") from None
    raise DurationError(f"is not a duration ({FORM})") from None


def _is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False
