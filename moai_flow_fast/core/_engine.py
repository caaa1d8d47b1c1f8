"""Chooses the engine: the compiled one unless MOAI_FLOW_FAST_NO_EXTENSIONS says otherwise."""

from __future__ import annotations

import os
from typing import Any

from ._contract import EngineFactory

__all__ = ["COMPILED", "NO_EXTENSIONS", "default_engine", "engine_class"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _parse_flag(name: str) -> bool:
    raw = os.environ.get(name, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be 0 or 1 (or true/false, yes/no, on/off), got {raw!r}")


NO_EXTENSIONS = _parse_flag("MOAI_FLOW_FAST_NO_EXTENSIONS")

_Default: EngineFactory
if NO_EXTENSIONS:
    from ._engine_py import Engine as _PyEngine

    _Default, COMPILED = _PyEngine, False
else:
    try:
        from ._engine_c import Engine as _CEngine

        _Default, COMPILED = _CEngine, True
    except ImportError:  # no build for this platform: the pure engine has the same semantics
        from ._engine_py import Engine as _PyEngine

        _Default, COMPILED = _PyEngine, False


def default_engine() -> EngineFactory:
    return _Default


def engine_class(engine: Any) -> EngineFactory:
    """The engine class for "auto", "compiled", "pure" or an engine class itself."""
    if isinstance(engine, type):
        return engine  # type: ignore[return-value]  # a user's class: trusted to fit
    if engine == "auto":
        return _Default
    if engine == "compiled":
        from ._engine_c import Engine  # fails loudly when the extension is not built

        return Engine
    if engine == "pure":
        from ._engine_py import Engine as PyEngine

        return PyEngine
    raise ValueError(
        f"engine must be 'auto', 'compiled', 'pure' or an engine class, got {engine!r}")


def engine_name(cls: EngineFactory) -> str:
    return "compiled" if cls.__module__.endswith("_engine_c") else "pure"
