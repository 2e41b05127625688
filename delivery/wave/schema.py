"""What a wave file may hold: pydantic models, their JSON Schema, and the problems of a file. Pure.

The models are the one description of the wave file (``docs/waves.md``): strict types (a YAML
number is not a string, ``true`` not a duration), no unknown field (a typo is not ignored), the
same bounds as the annotations (names of at most 63 characters, durations of at most 7 days). The
file is read bounded first (``delivery/yamlfile.py``: size, nodes, no aliases); ``problems`` then
lists what is wrong with it, each problem naming its place in the file (``stages[2].parallel[0].soak``)
and what to write there. ``delivery.wave.file`` turns a valid file into the ``Wave`` the runner
takes. The same models give the JSON Schema published for editors (``docs/wave-file.schema.json``)::

    python -m delivery.wave.schema > docs/wave-file.schema.json
"""

from __future__ import annotations

import json
import reprlib
import sys
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
    WithJsonSchema,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema

from delivery import spec as specmod
from delivery.errors import SpecError

DEFAULT_TIMEOUT = 15 * 60.0
MAX_DURATION = 7 * 86400.0
NAME = r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$"
LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"  # DNS-1123 label: a namespace, a Deployment
_NAME_RULE = "lower case letters, digits, '-', '.', '_'; a letter or digit first and last; at most 63 characters"
_LABEL_RULE = "lower case letters, digits, '-'; a letter or digit first and last; at most 63 characters"
_DURATION_RULE = "a duration such as 30s, 15m, 1h30m (a unit is required; at most 7 days)"
_SHOWN = reprlib.Repr()  # a value quoted in a message: at most 80 characters of it
_SHOWN.maxstring = _SHOWN.maxother = 80


def _duration(value: object) -> float:
    """Seconds of a duration; a YAML number or boolean is read as its text, which the grammar refuses with a hint."""
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        raise PydanticCustomError(
            "wave_duration", "{kind}; write {rule}", {"kind": _kind(value), "rule": _DURATION_RULE}
        )
    try:
        return specmod.parse_duration("", value, maximum=MAX_DURATION)
    except SpecError as exc:
        raise PydanticCustomError("wave_duration", "{problem}", {"problem": exc.problem}) from None


def _more_than_zero(seconds: float) -> float:
    if seconds <= 0:
        raise PydanticCustomError("wave_timeout", "must be more than 0s")
    return seconds


def _not_blank(value: str) -> str:
    if not value.strip():
        shown = _SHOWN.repr(value)
        raise PydanticCustomError(
            "wave_blank", "{shown} is blank: write a value or leave the field out", {"shown": shown}
        )
    return value.strip()


def _override_key(key: object) -> str:
    """``steps`` or ``deliver.dev/steps`` → ``deliver.dev/steps``, for a key a wave may set."""
    short = str(key).removeprefix(specmod.PREFIX)
    if short == "strategy":
        raise PydanticCustomError("wave_override", "the strategy is the Deployment's own; a wave only tunes it")
    if (
        not isinstance(key, str)
        or short in specmod.RESERVED
        or (short not in specmod.KEYS and not short.startswith("analysis"))
    ):
        known = ", ".join(OVERRIDABLE)
        message = "not a deliver.dev/* annotation a wave may set (known: {known})"
        raise PydanticCustomError("wave_override", message, {"known": known})
    return specmod.PREFIX + short


def _override_value(value: object) -> str:
    """An annotation's text: a string as written, a YAML number or boolean as its text (``false``, not ``False``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise PydanticCustomError("wave_override", "{kind}; write a string", {"kind": _kind(value)})


OVERRIDABLE = tuple(k for k in specmod.KEYS if k != "strategy" and k not in specmod.RESERVED)
_VALUE = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
_OVERRIDES_SHOWN = {
    "type": "object",
    "description": "deliver.dev/* annotations (docs/annotations.md), without the prefix, written on the Deployment "
    "in the same write as the change; not `strategy` (the Deployment's own) nor `state`/`request`",
    "properties": {k: {**_VALUE, "description": specmod.KEYS[k]} for k in OVERRIDABLE},
    "patternProperties": {
        rf"^deliver\.dev/({'|'.join(OVERRIDABLE)})$": _VALUE,
        r"^(deliver\.dev/)?analysis": _VALUE,
    },
    "additionalProperties": False,
}

_DURATION_SHOWN = {"type": "string", "pattern": r"^\s*([0-9]{1,5}(h|m|s|ms)){1,4}\s*$"}  # delivery/duration.py
Duration = Annotated[float, PlainValidator(_duration), WithJsonSchema(_DURATION_SHOWN)]
Timeout = Annotated[Duration, AfterValidator(_more_than_zero)]
Blankless = Annotated[str, AfterValidator(_not_blank), WithJsonSchema({"type": "string", "pattern": r"\S"})]
Overrides = Annotated[
    dict[Annotated[str, PlainValidator(_override_key)], Annotated[str, PlainValidator(_override_value)]],
    WithJsonSchema(_OVERRIDES_SHOWN),
]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, regex_engine="rust-regex")


class StageSchema(_Strict):
    """One stage: a Deployment in a namespace of a cluster (a kubeconfig and a context)."""

    model_config = ConfigDict(title="stage")

    name: str = Field(pattern=NAME, description=f"the stage's name, unique in the wave: {_NAME_RULE}")
    context: Blankless | None = Field(None, description="kubeconfig context (default: the kubeconfig's current one)")
    kubeconfig: Blankless | None = Field(
        None,
        description="the kubeconfig file (default: --kubeconfig, $KUBECONFIG, ~/.kube/config); "
        "a relative path is relative to the wave file",
    )
    namespace: str = Field(pattern=LABEL, description=f"the Deployment's namespace: {_LABEL_RULE}")
    app: str = Field(pattern=LABEL, description=f"the Deployment, annotated deliver.dev/strategy: {_LABEL_RULE}")
    overrides: Overrides | None = None
    soak: Duration | None = Field(None, description=f"this stage's soak time (default: the wave's): {_DURATION_RULE}")
    timeout: Duration | None = Field(None, description=f"this stage's timeout (default: the wave's): {_DURATION_RULE}")


class ParallelSchema(_Strict):
    """Stages run at once, as one step of the wave; the next step waits for all of them."""

    model_config = ConfigDict(title="parallel stages")

    parallel: list[StageSchema] = Field(min_length=1, description="the stages run at once")


def _entry(value: Any) -> str:
    return "parallel" if isinstance(value, dict) and "parallel" in value else "stage"


Entry = Annotated[
    Annotated[StageSchema, Tag("stage")] | Annotated[ParallelSchema, Tag("parallel")], Discriminator(_entry)
]


class WaveFileSchema(_Strict):
    """A wave file of `deliver wave` (docs/waves.md): one change through several clusters, stage by stage."""

    model_config = ConfigDict(title="deliver wave file")

    wave: str = Field(pattern=NAME, description=f"the wave's name: {_NAME_RULE}")
    on_failure: Literal["rollback", "hold"] = Field(
        "rollback",
        alias="on-failure",
        description="what happens to the stages before a failed one: rollback (their previous template back) or hold",
    )
    timeout: Timeout | None = Field(
        None,
        description=f"how long a stage's delivery may take (default 15m; more than 0s): {_DURATION_RULE}",
        json_schema_extra={"default": "15m"},
    )
    soak: Duration | None = Field(
        None,
        description=f"how long a stage must stay good after its delivery before the next starts: {_DURATION_RULE}",
        json_schema_extra={"default": "0s"},
    )
    stages: list[Entry] = Field(min_length=1, description="the stages in order; a `parallel` list is one step")


# ---------------------------------------------------------------------------- problems


def problems(raw: Any) -> tuple[WaveFileSchema | None, list[str]]:
    """The validated file, or None and every problem of ``raw`` (the YAML read), each as ``place: what``."""
    if not isinstance(raw, dict):
        return None, ["a wave file is a mapping with `wave` and `stages`"]
    try:
        valid = WaveFileSchema.model_validate(raw)
    except ValidationError as exc:
        return None, [_problem(raw, err) for err in exc.errors(include_url=False)]
    return valid, []


_WANTS = {  # what a field holds, as a message asks for it
    "wave": f"a name ({_NAME_RULE})",
    "name": f"a name ({_NAME_RULE})",
    "namespace": f"a namespace name ({_LABEL_RULE})",
    "app": f"a Deployment name ({_LABEL_RULE})",
    "context": "a context name of the kubeconfig",
    "kubeconfig": "the path of a kubeconfig file",
}
_SHAPES = {  # what a list or a mapping in the file is, said when it is missing, empty or of another type
    "stages": "a non-empty list of stages is needed",
    "stages[]": "a stage is a mapping with name, context or kubeconfig, namespace and app",
    "parallel": "`parallel` takes a non-empty list of stages and nothing beside it",
    "parallel[]": "a stage is a mapping with name, context or kubeconfig, namespace and app",
    "overrides": "must be a mapping of deliver.dev/* keys to values, e.g. {steps: '50,100'}",
}
_SHAPE_ERRORS = {"too_short", "list_type", "model_type", "model_attributes_type", "dict_type"}


def _known(model: type[BaseModel]) -> str:
    return ", ".join(sorted(f.alias or name for name, f in model.model_fields.items()))


def _problem(raw: dict[Any, Any], err: ErrorDetails) -> str:
    """One pydantic error as the wave's problem: ``stages[0].app (stage a): missing; write ...``."""
    loc = (*err["loc"], "[key]") if err["type"] == "invalid_key" else err["loc"]
    path, field, stage = _place(raw, loc)
    kind, value = err["type"], err.get("input")
    if kind.startswith("wave_"):  # ours: the message says it all
        what = err["msg"]
    elif kind in ("extra_forbidden", "invalid_key"):
        if len(loc) == 4 and loc[2] == "parallel":  # beside `parallel`: ("stages", 2, <tag>, key)
            what = _SHAPES["parallel"]
        else:
            what = f"unknown field (known: {_known(WaveFileSchema if len(loc) <= 2 else StageSchema)})"
    elif kind == "missing":
        what = f"missing; write {_WANTS[field]}" if field in _WANTS else _SHAPES.get(field, "missing")
    elif kind in _SHAPE_ERRORS and field in _SHAPES:
        what = _SHAPES[field]
    elif kind == "literal_error":
        expected = str(err.get("ctx", {}).get("expected", "")).replace("'", "")
        what = f"{_SHOWN.repr(value)} is not {expected}"
    elif kind == "string_pattern_mismatch" and field in _WANTS:
        what = f"{_SHOWN.repr(value)} is not {_WANTS[field]}"
    elif kind == "string_type" and field in _WANTS:
        if isinstance(value, int | float):  # a bool is an int
            what = f"{_kind(value)}, not a string: write it in quotes ('{_yaml(value)}')"
        else:
            what = f"{'empty' if value is None else _kind(value)}; write {_WANTS[field]}"
    else:
        what = err["msg"]
    where = f"{path} (stage {stage})" if stage and field != "name" else path
    return f"{where}: {what}" if where else what


def _place(raw: dict[Any, Any], loc: tuple[int | str, ...]) -> tuple[str, str, str]:
    """(path in the file, the field's name, the stage's name or "") of an error's location.

    ``("stages", 2, "parallel", "parallel", 0, "soak")`` is ``stages[2].parallel[0].soak``: the tag
    after a ``stages`` index (``stage`` or ``parallel``) is pydantic's, not the file's, and ``[key]``
    follows a key that is wrong itself. The field of a list's item is the list's name and ``[]``.
    """
    path, field, stage = "", "", ""
    node: Any = raw
    items = list(loc)
    if len(items) > 2 and items[0] == "stages" and isinstance(items[1], int):
        del items[2]  # the tag of the entry
    for i, item in enumerate(items):
        if item == "[key]":
            continue
        if isinstance(item, int) and items[i + 1 : i + 2] != ["[key]"]:
            path, field = f"{path}[{item}]", f"{field}[]"
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
            name = node.get("name") if isinstance(node, dict) and "parallel" not in node else None
            stage = name if isinstance(name, str) and name else stage
        else:
            path, field = f"{path}.{item}" if path else str(item), str(item)
            node = node.get(item) if isinstance(node, dict) else None
    return path, field, stage


def _kind(value: object) -> str:
    """A value as a message names it: ``5 is a YAML number``, ``an empty value``."""
    if value is None:
        return "an empty value"
    names = {bool: "a YAML boolean", int: "a YAML number", float: "a YAML number", list: "a list", dict: "a mapping"}
    return f"{_yaml(value)} is {names.get(type(value), type(value).__name__)}"


def _yaml(value: object) -> str:
    """A value as YAML spells it (``true``, ``30``, ``'soon'``), at most 80 characters."""
    return str(value).lower() if isinstance(value, bool) else _SHOWN.repr(value)


# ---------------------------------------------------------------------------- JSON Schema


class _Generator(GenerateJsonSchema):
    """Draft-07 (yaml-language-server reads up to draft 7): ``definitions``; no per-field titles, no null defaults."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        shown = super().default_schema(schema)
        if "default" in shown and shown["default"] is None:  # an optional field: nothing to complete with
            del shown["default"]
        return shown


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the wave file (``docs/wave-file.schema.json``)."""
    body = WaveFileSchema.model_json_schema(
        by_alias=True, ref_template="#/definitions/{model}", schema_generator=_Generator
    )
    definitions = body.pop("$defs", {})
    return {"$schema": "http://json-schema.org/draft-07/schema#", **body, "definitions": definitions}


def main() -> None:
    sys.stdout.write(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
