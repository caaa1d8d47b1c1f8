"""The engine contract: both engines and the compiled engine's stub expose exactly what the
Protocol in core/_contract.py lists, with the same parameters; the rules table agrees with
the C copies."""
from __future__ import annotations

import ast
import inspect
import pathlib

import pytest

import moai_flow_fast.core._engine_c as compiled
import moai_flow_fast.core._engine_py as pure
from moai_flow_fast.core import _contract, _rules
from moai_flow_fast.core._rules import STATES

STUB = pathlib.Path(compiled.__file__).with_name("_engine_c.pyi")
if not STUB.exists():  # an installed wheel ships the stub beside the module; a tree has it
    STUB = pathlib.Path(_contract.__file__).with_name("_engine_c.pyi")

DUNDERS = {"__len__", "__contains__"}


def protocol_members() -> set[str]:
    names = set(_contract.Engine.__annotations__)
    names |= {n for n in vars(_contract.Engine)
              if (not n.startswith("_") or n in DUNDERS)}
    return names


def public(obj) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_") or n in DUNDERS}


def make(module):
    return module.Engine(history_size=4, tick_ms=10, clock=None, states=STATES)


def params(fn) -> list[tuple[str, str, bool]]:
    """(name, kind, has a default) of each parameter after self."""
    sig = inspect.signature(fn)
    return [(p.name, p.kind.name, p.default is not p.empty)
            for p in list(sig.parameters.values())[1:]]


def stub_methods() -> dict[str, list[tuple[str, str, bool]]]:
    tree = ast.parse(STUB.read_text())
    engine = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Engine")
    out: dict[str, list[tuple[str, str, bool]]] = {}
    for node in engine.body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            n_plain = len(a.args) - 1
            first_default = n_plain - len(a.defaults)
            got = [(x.arg, "POSITIONAL_OR_KEYWORD", i >= first_default)
                   for i, x in enumerate(a.args[1:])]
            got += [(x.arg, "KEYWORD_ONLY", d is not None)
                    for x, d in zip(a.kwonlyargs, a.kw_defaults)]
            is_property = any(isinstance(d, ast.Name) and d.id == "property"
                              for d in node.decorator_list)
            out[node.name] = [] if is_property else got
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = []
    return out


@pytest.mark.parametrize("module", [compiled, pure], ids=["compiled", "pure"])
def test_engine_has_every_protocol_member(module):
    engine = make(module)
    missing = sorted(n for n in protocol_members() if not hasattr(engine, n))
    assert missing == []


def test_both_engines_expose_the_same_public_names():
    assert public(make(compiled)) == public(make(pure))


def test_stub_lists_exactly_the_compiled_engines_names():
    stub = set(stub_methods()) - {"__init__"}
    assert stub == public(make(compiled))


def test_protocol_covers_every_public_engine_name():
    # The facade may use nothing that the Protocol does not type.
    assert public(make(pure)) == protocol_members()


@pytest.mark.parametrize("name", sorted(n for n in protocol_members()
                                        if callable(getattr(pure.Engine, n, None))))
def test_method_parameters_agree(name):
    proto = params(getattr(_contract.Engine, name))
    assert params(getattr(pure.Engine, name)) == proto
    if name not in DUNDERS:   # C slot wrappers take positional-only parameters (stubtest
        assert stub_methods()[name] == proto          # checks those in the stub)
        assert params(getattr(compiled.Engine, name)) == proto


def test_rules_table_matches_the_c_copies():
    for t in range(1, 12):
        assert compiled._schedule(t) == _rules.crossing_schedule(t)
    for t in range(1, 7):
        for e in range(0, 80):
            assert compiled._state(e, 10, t) == _rules.state_code(e, 10, t)


def test_crossing_schedule_follows_the_state_function():
    # Each crossing lands where the state function changes, in order of severity.
    for t in range(1, 9):
        for mult, code in _rules.crossing_schedule(t):
            assert _rules.state_code(mult * 100, 100, t) == code
            assert _rules.state_code(mult * 100 - 1, 100, t) < code
