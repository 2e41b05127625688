"""KubeWrapper (delivery/kube/wrapper.py): every method of the ``Kube`` protocol, forwarded unchanged.

The wrappers (``CachedKube``, ``Fenced``) override only the calls they change; a method the base
missed, or forwarded with another signature, would silently change what the engine sends.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from delivery.engine.leader import Fenced
from delivery.kube.cache import Cache, CachedKube
from delivery.kube.client import Kube, KubeClient, Resource
from delivery.kube.wrapper import KubeWrapper
from tests.fakekube import FakeKube

# the methods the protocol declares (not what typing.Protocol adds)
PROTOCOL = sorted(
    name for name, member in vars(Kube).items() if inspect.isfunction(member) and not name.startswith("_")
)
RESOURCE = Resource("example.com", "v1", "widgets")


def signature(cls: type, name: str) -> inspect.Signature:
    return inspect.signature(getattr(cls, name), eval_str=True)


def test_the_protocol_is_what_the_engine_calls() -> None:
    assert PROTOCOL == ["create", "delete", "get", "items", "list", "patch", "replace", "request", "watch"]


@pytest.mark.parametrize("name", PROTOCOL)
def test_the_base_forwards_every_method_with_the_protocols_signature(name: str) -> None:
    assert name in vars(KubeWrapper), f"KubeWrapper does not forward Kube.{name}"
    assert signature(KubeWrapper, name) == signature(Kube, name)
    assert signature(KubeClient, name) == signature(Kube, name)  # the real client, for comparison


@pytest.mark.parametrize("wrapper", [CachedKube, Fenced])
def test_a_wrapper_overrides_with_the_protocols_signature(wrapper: type[KubeWrapper]) -> None:
    for name in PROTOCOL:
        assert signature(wrapper, name) == signature(Kube, name), f"{wrapper.__name__}.{name}"


class Recorder:
    """A ``Kube`` that notes every call, its arguments bound to the protocol's signature."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        if name not in PROTOCOL:
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            bound = signature(Kube, name).bind(self, *args, **kwargs)
            bound.apply_defaults()
            self.calls.append((name, {k: v for k, v in bound.arguments.items() if k != "self"}))
            return {"answer": name}

        return call


def arguments(name: str) -> dict[str, Any]:
    """One distinct value per parameter: a resource, strings for the rest (a wrapper may look at them)."""
    params = list(signature(Kube, name).parameters)[1:]
    return {p: RESOURCE if p == "res" else f"{p}-of-{name}" for p in params}


WRAPPERS = {
    "KubeWrapper": lambda kube: KubeWrapper(kube),
    "a subclass overriding nothing": lambda kube: type("Plain", (KubeWrapper,), {})(kube),
    "Fenced, leading": lambda kube: Fenced(kube, lambda: True),
    "CachedKube, nothing synced": lambda kube: CachedKube(kube, Cache()),
}


@pytest.mark.parametrize("make", WRAPPERS.values(), ids=WRAPPERS.keys())
@pytest.mark.parametrize("name", PROTOCOL)
def test_a_wrapper_forwards_every_call_unchanged(make: Any, name: str) -> None:
    inner = Recorder()
    wrapper = make(inner)
    assert isinstance(wrapper, Kube)
    given = arguments(name)
    if name == "request":
        given["method"] = "POST"  # a write: Fenced checks the leadership, then sends it
    answer = getattr(wrapper, name)(**given)
    bound = signature(Kube, name).bind(None, **given)
    bound.apply_defaults()
    expected = {k: v for k, v in bound.arguments.items() if k != "self"}
    assert inner.calls == [(name, expected)]
    assert answer == (None if name == "delete" else {"answer": name})


@pytest.mark.parametrize("name", PROTOCOL)
def test_the_defaults_reach_the_wrapped_kube(name: str) -> None:
    inner = Recorder()
    required = {
        p.name: RESOURCE if p.name == "res" else f"{p.name}-of-{name}"
        for p in list(signature(Kube, name).parameters.values())[1:]
        if p.default is inspect.Parameter.empty
    }
    getattr(KubeWrapper(inner), name)(**required)
    ((called, got),) = inner.calls
    defaults = {p.name: p.default for p in signature(Kube, name).parameters.values() if p.name not in required}
    defaults.pop("self")
    assert called == name and got == dict(required, **defaults)


def test_the_wrappers_over_the_fake_are_kubes() -> None:
    kube = FakeKube()
    assert isinstance(CachedKube(kube, Cache()), Kube)
    assert isinstance(Fenced(CachedKube(kube, Cache()), lambda: True), Kube)
