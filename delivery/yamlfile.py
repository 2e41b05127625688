"""YAML written by users (wave files, manifests, kubeconfigs), read bounded.

PyYAML's ``safe_load`` builds an alias bomb ("billion laughs") as a few shared objects in no time;
whatever walks them next (JSON, a hash, a copy, a dump) expands them exponentially and never ends.
So aliases (``*name``) are refused, and so are texts over ``YAML_MAX`` bytes or ``YAML_NODES`` nodes,
and integers of more than ``YAML_INT_DIGITS`` digits (Python cannot even print one of over 4,300 digits:
a ``ValueError`` past every ``except yaml.YAMLError``; a hexadecimal one is read without that limit).
Every refusal is a ``yaml.YAMLError`` (``Refused``), so callers keep their one ``except``.
"""

from __future__ import annotations

from typing import Any

import yaml

YAML_MAX = 4 * 1024 * 1024  # bytes of one YAML text (a wave file, a manifest, a kubeconfig)
YAML_NODES = 200_000  # scalars, sequences and mappings in one text (each document counted)
YAML_INT_DIGITS = 70  # characters of an integer scalar (an int64 in binary is 0b and 64 digits): more is refused


class Refused(yaml.YAMLError):
    """The text is larger than the caps or uses aliases: not read."""


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses aliases and counts the nodes it composes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise Refused(
                f"aliases (*name) are not allowed (line {mark.line + 1}): write the value out where it is used"
            )
        self.nodes += 1
        if self.nodes > YAML_NODES:
            raise Refused(f"more than {YAML_NODES} YAML nodes")
        return super().compose_node(parent, index)

    def construct_yaml_int(self, node: Any) -> Any:
        text = str(node.value).replace("_", "")
        if len(text.lstrip("+-")) > YAML_INT_DIGITS:
            line = node.start_mark.line + 1
            raise Refused(f"a number of more than {YAML_INT_DIGITS} digits (line {line}): quote it if it is text")
        return super().construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _check_size(text: str) -> None:
    if len(text) > YAML_MAX or len(text.encode()) > YAML_MAX:
        raise Refused(f"more than {YAML_MAX} bytes")


def load(text: str) -> Any:
    """The one YAML document in ``text`` (None when empty); ``yaml.YAMLError`` when it is not YAML or is refused."""
    _check_size(text)
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_all(text: str) -> list[Any]:
    """Every YAML document in ``text``; ``yaml.YAMLError`` when it is not YAML or is refused."""
    _check_size(text)
    loader = _BoundedLoader(text)
    try:
        docs = []
        while loader.check_data():  # type: ignore[no-untyped-call]
            docs.append(loader.get_data())
        return docs
    finally:
        loader.dispose()


def read(path: str) -> str:
    """The text of a YAML file, at most ``YAML_MAX`` bytes (OSError when unreadable, ``Refused`` when larger)."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read(YAML_MAX + 1)
    _check_size(text)
    return text
