"""Build the Cython extensions in src/ into modules of the moai_flow_fast package.

Read at build time (each 0/1, true/false, yes/no or on/off, parsed as moai_flow_fast does):
MOAI_FLOW_FAST_NO_EXTENSIONS=1 builds a pure-Python package (no compiler, no extension);
MOAI_FLOW_FAST_CYTHON_DEBUG=1 builds the debug engine: Cython's bounds, wraparound and
initialisation checks on, -O0 -g. The default is the release build: checks off, -O3, stripped.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# The same words as moai_flow_fast.core._engine (tests/test_engine_choice.py checks it).
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def parse_flag(name):
    raw = os.environ.get(name, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be 0 or 1 (or true/false, yes/no, on/off), got {raw!r}")


# Extension module -> its subpackage; the sources are src/<module>.pyx.
MODULES = {"_engine_c": "core", "_stats_c": "analytics"}


class CythonBuildExt(build_ext):
    """Cythonizes only when extensions are really built (an sdist or the metadata step need
    no Cython), into a C folder per mode, and recompiles everything when the mode differs
    from the last build's: the file times alone would keep a debug .so after a release build."""

    def run(self):
        from Cython.Build import cythonize

        debug = parse_flag("MOAI_FLOW_FAST_CYTHON_DEBUG")
        mode = "debug" if debug else "release"
        stamp = os.path.join("build", "cython-mode")  # paths are relative to this folder
        previous = None
        if os.path.exists(stamp):
            with open(stamp) as f:
                previous = f.read().strip()
        if previous != mode:
            self.force = True
        directives = {
            "language_level": 3,
            "boundscheck": debug,
            "wraparound": debug,
            "initializedcheck": debug,
            "cdivision": True,
            "embedsignature": True,
        }
        generated = cythonize(
            self.extensions,
            include_path=["src"],
            compiler_directives=directives,
            build_dir=os.path.join("build", f"cython-{mode}"),
            force=self.force,
            quiet=True,
            nthreads=min(len(self.extensions), os.cpu_count() or 1),
        )
        # Point the finalized extensions at their C files (new objects would lack setuptools'
        # per-extension state).
        c_sources = {ext.name: ext.sources for ext in generated}
        for ext in self.extensions:
            ext.sources = c_sources[ext.name]
        if not self.parallel:  # the two modules compile side by side
            self.parallel = min(len(self.extensions), os.cpu_count() or 1)
        self._debug = debug
        super().run()
        os.makedirs(os.path.dirname(stamp), exist_ok=True)
        with open(stamp, "w") as f:
            f.write(mode + "\n")

    def build_extensions(self):
        # Flags for gcc/clang only; another compiler keeps its defaults.
        if self.compiler.compiler_type == "unix":
            for ext in self.extensions:
                if self._debug:
                    ext.extra_compile_args = ["-O0", "-g"]
                else:
                    # -g0 after Python's own -g: no debug info; -s: no symbol table.
                    ext.extra_compile_args = ["-O3", "-g0"]
                    if sys.platform.startswith("linux"):
                        ext.extra_link_args = ["-s"]
        super().build_extensions()


if parse_flag("MOAI_FLOW_FAST_NO_EXTENSIONS"):
    extensions = []
else:
    extensions = [
        Extension(f"moai_flow_fast.{package}.{name}", [f"src/{name}.pyx"])
        for name, package in MODULES.items()
    ]

setup(ext_modules=extensions, cmdclass={"build_ext": CythonBuildExt})
