"""The xUnit plugin's JUnit schema (tests/data/xunit-junit-10.xsd, see tests/data/README.md) as a validator."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import xmlschema

XSD = Path(__file__).parent / "data" / "xunit-junit-10.xsd"


@cache
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def problems(xml: str) -> list[str]:
    """Why the xUnit plugin would refuse this JUnit file ([] when it is valid)."""
    return [f"{e.path}: {e.reason}" for e in schema().iter_errors(xml)]
