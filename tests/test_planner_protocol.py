"""The planner protocol (``strategies.steps.StrategyPlanner``) is wide enough that the code every
strategy shares asks the planner instead of testing the strategy: ``strategies/plan.py`` and
``strategies/hooks.py`` hold no branch on a ``Strategy`` member, and hooks imports no planner.
Read from the source with ast; the checker is shown to catch the branches it forbids."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest

from strategies.plan import PLANNERS, services_in_use
from strategies.record import Phase
from strategies.spec import DeliverySpec, RouterRef, Strategy
from strategies.steps import StrategyPlanner
from tests.planning import NEW, STABLE, canary_spec, obs, started, version

ROOT = Path(__file__).resolve().parent.parent
# the code every strategy shares: it asks the planner, it never tests the strategy
SHARED = ("strategies/plan.py", "strategies/hooks.py", "strategies/steps.py")
PLANNER_MODULES = {"bluegreen", "canary", "recreate", "rolling"}
MEMBERS = set(Strategy.__members__)
VALUES = {s.value for s in Strategy}
TABLE = "PLANNERS"  # the one place a strategy is named: which planner it is


def _is_member(node: ast.AST) -> bool:
    """``Strategy.<MEMBER>``"""
    return (
        isinstance(node, ast.Attribute)
        and node.attr in MEMBERS
        and isinstance(node.value, ast.Name)
        and node.value.id == "Strategy"
    )


def _names_strategy(node: ast.AST) -> bool:
    """A ``Strategy`` member or a strategy's name (``"blue-green"``) anywhere in ``node``."""
    return any(_is_member(n) or (isinstance(n, ast.Constant) and n.value in VALUES) for n in ast.walk(node))


def _names_planner(node: ast.AST) -> bool:
    """A planner class (``BlueGreenPlanner``, ``steps.NativePlanner``) anywhere in ``node``."""
    return any(
        (isinstance(n, ast.Name) and n.id.endswith("Planner"))
        or (isinstance(n, ast.Attribute) and n.attr.endswith("Planner"))
        for n in ast.walk(node)
    )


def _in_table(tree: ast.Module) -> set[int]:
    """ids of the nodes inside the ``PLANNERS`` table (a strategy named there is no branch)."""
    inside: set[int] = set()
    for stmt in tree.body:
        targets = [stmt.target] if isinstance(stmt, ast.AnnAssign) else getattr(stmt, "targets", [])
        if any(isinstance(t, ast.Name) and t.id == TABLE for t in targets):
            inside |= {id(n) for n in ast.walk(stmt)}
    return inside


def strategy_branches(source: str) -> list[str]:
    """Where ``source`` tests which strategy it runs: a comparison with a ``Strategy`` member or a
    strategy's name (``is``, ``==``, ``in`` ...), a ``match`` on one, ``isinstance`` with a planner
    class, or a ``Strategy`` member named anywhere but the ``PLANNERS`` table."""
    tree = ast.parse(source)
    table = _in_table(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        line = f"line {getattr(node, 'lineno', '?')}: {ast.unparse(node)}"
        if isinstance(node, ast.Compare) and _names_strategy(node):
            found.append(line)
        elif isinstance(node, ast.Match) and any(_names_strategy(c.pattern) for c in node.cases):
            found.append(f"line {node.lineno}: match {ast.unparse(node.subject)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "isinstance"
            and len(node.args) == 2
            and _names_planner(node.args[1])
        ):
            found.append(line)
        elif _is_member(node) and id(node) not in table:
            found.append(line)
    return sorted(set(found))


def planner_imports(source: str) -> set[str]:
    """The planner modules ``source`` (a module of ``strategies``) imports, relatively or not."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1 or (not node.level and module.split(".")[0] == "strategies"):
                inside = module if node.level else module.removeprefix("strategies").lstrip(".")
                names = [inside.split(".")[0]] if inside else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.removeprefix("strategies.") for a in node.names if a.name.startswith("strategies.")]
        found |= {n for n in names if n in PLANNER_MODULES}
    return found


# ------------------------------------------------------------------ the checker catches what it forbids

BRANCHY = [
    "if spec.strategy is Strategy.BLUE_GREEN:\n    pass",
    "if spec.strategy is not Strategy.CANARY or spec.router.kind == 'replica':\n    pass",
    "x = Strategy.CANARY == spec.strategy",
    "ok = spec.strategy in (Strategy.CANARY, Strategy.BLUE_GREEN)",
    "ok = spec.strategy.value == 'blue-green'",
    "then = 'a' if spec.strategy != Strategy.ROLLING else 'b'",
    "match spec.strategy:\n    case Strategy.RECREATE:\n        pass",
    "ok = isinstance(planner, BlueGreenPlanner)",
    "GATED = (Strategy.CANARY,)\nok = spec.strategy in GATED",
]


@pytest.mark.parametrize("source", BRANCHY)
def test_the_checker_sees_a_strategy_branch(source: str) -> None:
    assert strategy_branches(source)


def test_the_checker_lets_the_table_and_the_planner_alone() -> None:
    source = (
        "PLANNERS: dict[Strategy, StrategyPlanner] = {Strategy.CANARY: CanaryPlanner()}\n"
        "old = Strategy(state.strategy)\n"
        "changed = state.strategy != spec.strategy.value\n"
        "served = planner.serving(spec, state)\n"
    )
    assert strategy_branches(source) == []


def test_the_checker_sees_a_planner_import() -> None:
    assert planner_imports("from .bluegreen import PREVIEW") == {"bluegreen"}
    assert planner_imports("from . import canary") == {"canary"}
    assert planner_imports("from strategies.rolling import RollingPlanner") == {"rolling"}
    assert planner_imports("import strategies.recreate") == {"recreate"}
    assert planner_imports("from strategies import bluegreen") == {"bluegreen"}
    assert planner_imports("from .steps import StrategyPlanner\nfrom .actions import Plan") == set()


# ------------------------------------------------------------------ the shared code


@pytest.mark.parametrize("path", SHARED)
def test_shared_code_tests_no_strategy(path: str) -> None:
    assert strategy_branches((ROOT / path).read_text()) == []


def test_hooks_import_no_planner() -> None:
    assert planner_imports((ROOT / "strategies/hooks.py").read_text()) == set()


# ------------------------------------------------------------------ every planner answers the protocol


PROTOCOL = sorted(n for n, v in vars(StrategyPlanner).items() if callable(v) and not n.startswith("_"))


def test_every_strategy_has_a_planner_answering_the_whole_protocol() -> None:
    assert set(PLANNERS) == set(Strategy)
    assert {"advance", "undo", "native", "pinned_services", "rest_service", "promotes"} <= set(PROTOCOL)
    for strategy, planner in PLANNERS.items():
        missing = [n for n in PROTOCOL if not callable(getattr(planner, n, None))]
        assert missing == [], strategy


ROUTED = RouterRef("gateway-api", "web")


NO_ROUTER = RouterRef("replica")


def _spec(strategy: Strategy, router: RouterRef = NO_ROUTER) -> DeliverySpec:
    return replace(
        canary_spec(router=router), strategy=strategy, active_service="app-active", preview_service="app-preview"
    )


@pytest.mark.parametrize(
    ("strategy", "router", "pinned", "at_rest"),
    [
        (Strategy.CANARY, ROUTED, ("app-stable", "app-canary"), "app-stable"),
        (Strategy.CANARY, NO_ROUTER, (), ""),
        (Strategy.BLUE_GREEN, NO_ROUTER, ("app-active", "app-preview"), ""),
        (Strategy.ROLLING, NO_ROUTER, (), ""),
        (Strategy.RECREATE, NO_ROUTER, (), ""),
    ],
)
def test_services_each_strategy_pins_and_routes_at_rest(
    strategy: Strategy, router: RouterRef, pinned: tuple[str, ...], at_rest: str
) -> None:
    spec = _spec(strategy, router)
    assert services_in_use(spec) == pinned
    assert PLANNERS[strategy].rest_service(spec) == at_rest


def test_where_the_load_test_attaches() -> None:
    canary, bluegreen = PLANNERS[Strategy.CANARY], PLANNERS[Strategy.BLUE_GREEN]
    spec = _spec(Strategy.CANARY, ROUTED)
    assert canary.serving(spec, started(Strategy.CANARY, weight=20))  # step 1 serves its 20 %
    assert not canary.serving(spec, started(Strategy.CANARY, weight=0))  # not yet
    assert not canary.serving(spec, started(Strategy.CANARY, step=2, weight=100))  # promotion is no step
    bg = _spec(Strategy.BLUE_GREEN)
    assert bluegreen.serving(bg, started(Strategy.BLUE_GREEN))
    assert not bluegreen.serving(bg, started(Strategy.BLUE_GREEN, switched=1000.0))
    preview = started(Strategy.BLUE_GREEN)
    assert not bluegreen.load_ready(bg, preview, obs(version(STABLE, 5), version(NEW, 5, ready=4, owned=False)))
    assert bluegreen.load_ready(bg, preview, obs(version(STABLE, 5), version(NEW, 5, owned=False)))
    for strategy in (Strategy.ROLLING, Strategy.RECREATE):
        assert not PLANNERS[strategy].serving(_spec(strategy), started(strategy, weight=100))


def test_where_the_promotion_is() -> None:
    canary, bluegreen = PLANNERS[Strategy.CANARY], PLANNERS[Strategy.BLUE_GREEN]
    at = started(Strategy.CANARY, step=2, weight=50)
    assert canary.promotes(at, at.replace(step=3, phase=Phase.PROMOTING))
    assert not canary.promotes(at, at.replace(step=3))
    preview = started(Strategy.BLUE_GREEN)
    assert bluegreen.promotes(preview, preview.replace(step=1))
    assert not bluegreen.promotes(preview, preview)
    assert not bluegreen.promotes(preview.replace(switched=1.0), preview.replace(step=2, phase=Phase.PROMOTING))
    assert bluegreen.promotion(preview).reached == f"preview of revision {NEW} passed"
    assert canary.promotion(at).gated == "promotion"


def test_which_strategies_drain_and_which_never_run_two_versions() -> None:
    """What steps.py asked of the strategy before (issue 25): blue-green and routed canaries keep pods
    for the drain; recreate is exclusive (a held rollback waits for the rejected pods to be gone)."""
    routed = replace(canary_spec(), router=RouterRef("gateway-api", "web"))
    plain = canary_spec()
    drains = {s: PLANNERS[s].drains(plain) for s in Strategy}
    assert drains == {
        Strategy.CANARY: False,
        Strategy.BLUE_GREEN: True,
        Strategy.ROLLING: False,
        Strategy.RECREATE: False,
    }
    assert PLANNERS[Strategy.CANARY].drains(routed)
    assert {s for s in Strategy if PLANNERS[s].exclusive()} == {Strategy.RECREATE}
