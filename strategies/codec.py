"""How the rollout record is written and read as JSON data.

Written: what it keeps (the newest verdicts and looks) and its byte budget (``bounded``: the
templates packed, then what decisions need least given up first). Read: the record is an annotation
anyone who may edit the Deployment can write by hand, so every field is read through a cap here (its
type, range, nesting, a packed template's inflated size) and a bad one raises ValueError naming it.
"""

from __future__ import annotations

import base64
import json
import math
import reprlib
import zlib
from typing import Any

KEPT_VERDICTS = 20  # verdicts a record keeps (the newest), when it has room
KEPT_LOOKS = 30  # look points per check a record keeps for the current delivery (the newest)
RECORD_BUDGET = 128 * 1024  # bytes: the API server allows 256 KiB for all annotations of an object together
TEMPLATES = ("stableTemplate", "failedTemplate")
# Caps on reading a record: it is an annotation anyone who may edit the Deployment can write by hand.
PACKED_MAX = 1024 * 1024  # bytes a packed template may inflate to (a whole Deployment is at most ~1.5 MiB)
RECORD_DEPTH = 64  # nesting of JSON arrays/objects in a record or a packed template (a pod template: ~12)
RECORD_COUNT_MAX = 1_000_000  # a step index, extension count, ... (a canary has at most ~200 steps)
RECORD_TIME_MAX = 32_503_680_000.0  # a time in a record: seconds since the epoch, before the year 3000
RECORD_NUMBER_TEXT = 32  # characters of a number written as text (an older record's "3")
OBSERVATIONS_MAX = 10**15  # observations a check of a record rests on (the judges refuse larger counts)


def _encoded_size(d: dict[str, Any]) -> int:
    return len(json.dumps(d, sort_keys=True, separators=(",", ":")).encode())


def _pack(template: dict[str, Any]) -> str:
    """A template as compact text: zlib-compressed JSON, base64 (deterministic: no timestamp)."""
    raw = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return base64.b64encode(zlib.compress(raw, 9)).decode()


def record_template(d: dict[str, Any], key: str) -> dict[str, Any] | None:
    """A template of the record, as it is (``key``) or packed (``key + "Packed"``), or None."""
    if d.get(key):
        return record_object(key, d[key])
    return _unpack(key + "Packed", d.get(key + "Packed"))


def _unpack(key: str, text: Any) -> dict[str, Any] | None:
    """A packed template (``_pack``), inflated to at most ``PACKED_MAX`` bytes: a few hundred KiB of
    hand-written zeros would otherwise inflate to gigabytes in one read."""
    if not text:
        return None
    if not isinstance(text, str):
        raise ValueError(f"{key} is not text but {shown(text)}")
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(base64.b64decode(text, validate=True), PACKED_MAX + 1)
    except zlib.error as exc:
        raise ValueError(f"{key} is not zlib data ({exc})") from None
    if len(raw) > PACKED_MAX:
        raise ValueError(f"{key} inflates past {PACKED_MAX} bytes")
    if not inflater.eof:
        raise ValueError(f"{key} is truncated")
    loaded = record_object(key, json.loads(raw))
    check_depth(loaded)
    return loaded


def check_depth(value: Any, limit: int = RECORD_DEPTH) -> None:
    """ValueError if JSON data nests deeper than ``limit`` arrays/objects (walked without recursion)."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            raise ValueError(f"nested deeper than {limit} levels")
        todo.extend((child, depth + 1) for child in children)


def record_int(key: str, value: Any, hi: int = RECORD_COUNT_MAX, lo: int = 0) -> int:
    """A count of a record (a step, a weight): a whole number in lo..hi; ValueError otherwise."""
    number = _finite(key, value)
    if not lo <= number <= hi:
        raise ValueError(f"{key}: {shown(value)} is out of range ({lo}..{hi})")
    return int(number)


def record_time(key: str, value: Any) -> float:
    """A time of a record: seconds since the epoch, finite, 0..RECORD_TIME_MAX; ValueError otherwise."""
    number = _finite(key, value)
    if not 0 <= number <= RECORD_TIME_MAX:
        raise ValueError(f"{key}: {shown(value)} is out of range (0..{RECORD_TIME_MAX:.0f})")
    return number


def _finite(key: str, value: Any) -> float:
    if isinstance(value, str) and len(value) <= RECORD_NUMBER_TEXT:
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{key}: {shown(value)} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key}: {shown(value)} is not a number")
    if isinstance(value, int):
        return value if abs(value) <= RECORD_TIME_MAX else math.inf  # no float overflow of a huge int
    if not math.isfinite(value):
        raise ValueError(f"{key}: {value} is not a finite number")
    return value


def record_object(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{key} is not a JSON object but {shown(value)}")
    return value


def record_array(key: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{key} is not a JSON array but {shown(value)}")
    return value


def shown(value: Any) -> str:
    """A value of a record in a message: its type and a short form of it (reprlib: bounded)."""
    return f"{type(value).__name__} {reprlib.repr(value)}"


def bounded(d: dict[str, Any], budget: int) -> dict[str, Any]:
    """The record within ``budget`` bytes, giving up first what decisions need least.

    A record past the API server's limit is rejected (422) and then nothing can be recorded or done,
    so, in this order, until it fits: the templates are packed (lossless: ``from_dict`` unpacks
    them); the look points go (only the dashboard reads them); older verdicts lose their details, then
    only the newest 5, then only the newest verdict is kept (decisions read only the current step's
    newest verdict); the failed template goes (`deliver
    retry` is then refused; applying the template again delivers it); last the stable template (only
    needed when the stable ReplicaSet is gone). A record small enough is returned as it is.

    Only ``details`` and ``summary`` (for people) are given up from the verdicts kept: what planners
    decide on (outcome, ``checks``, ``outOfReach``, ``interim``) stays, as do ``hold`` and
    ``outOfReachWarned``, so a decision never changes with the room the record had."""
    if _encoded_size(d) <= budget:
        return d
    d = dict(d)
    for key in TEMPLATES:
        if key in d:
            d[key + "Packed"] = _pack(d.pop(key))
    if "looks" in d and _encoded_size(d) > budget:
        d.pop("looks")  # only the dashboard's chart reads them
    if "running" in d and _encoded_size(d) > budget:
        d["running"] = dict(d["running"], details={})  # its typed checks stay: the look's evidence
    verdicts: list[dict[str, Any]] = list(d.get("verdicts") or [])
    for fewer in (len(verdicts), 5, 1):
        if _encoded_size(d) <= budget:
            return d
        kept = verdicts[-fewer:] if verdicts else []
        d["verdicts"] = [dict(v, details={}) for v in kept[:-1]] + kept[-1:]
    if _encoded_size(d) > budget and verdicts:
        d["verdicts"] = [dict(verdicts[-1], summary=str(verdicts[-1].get("summary", ""))[:200], details={})]
    for key in ("failedTemplatePacked", "stableTemplatePacked"):
        if _encoded_size(d) <= budget:
            return d
        d.pop(key, None)
    return d
