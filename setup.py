"""Build the Cython extensions in src/ into modules of the moai_flow_fast package.

MOAI_FLOW_FAST_CYTHON_DEBUG=1 turns bounds, wraparound and initialisation checks back on
(for a debug test run); the default build turns them off.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

_flag = os.environ.get("MOAI_FLOW_FAST_CYTHON_DEBUG", "0").strip().lower()
if _flag not in {"0", "1", "", "true", "false"}:
    raise SystemExit(f"MOAI_FLOW_FAST_CYTHON_DEBUG must be 0 or 1, got {_flag!r}")
DEBUG = _flag in {"1", "true"}

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

# Extension module -> its package; the sources are src/<module>.pyx.
MODULES = {"_engine_c": "core", "_stats_c": "analytics"}

extensions = [
    Extension(
        f"moai_flow_fast.{package}.{name}",
        [f"src/{name}.pyx"],
        extra_compile_args=["-O0", "-g"] if DEBUG else ["-O3"],
    )
    for name, package in MODULES.items()
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src"],
        compiler_directives=DIRECTIVES,
        force=DEBUG,
    ),
)
