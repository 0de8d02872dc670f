"""Builds the reference firmware's C (firmware_bridge/firmware/) with the system compiler for the tests.

Strict C99 with every warning an error, under AddressSanitizer + UndefinedBehaviorSanitizer
where the toolchain has them. A missing compiler fails the test in one line (`make
test-tools` installs gcc): the firmware tests are never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware_bridge" / "firmware"
WIRE = FIRMWARE / "edgehar_wire" / "src"
GLOVE = FIRMWARE / "edgehar_glove"
FLAGS = ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O1", "-g"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
# leaks are the test's own business; a sanitizer report must end the program with an error
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0", "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}


@lru_cache(maxsize=None)
def compiler(cxx: bool = False) -> str:
    """$CC or cc (with cxx: $CXX or c++); fails the test in one line when there is none."""
    var, names, package = ("CXX", ("c++", "g++"), "g++") if cxx else ("CC", ("cc", "gcc"), "gcc")
    found = os.environ.get(var) or next(filter(None, map(shutil.which, names)), None)
    if not found:
        pytest.fail(f"the firmware tests need a {'C++' if cxx else 'C'} compiler and none is on PATH: run "
                    f"'make test-tools' (Debian: apt-get install {package})", pytrace=False)
    return found


@lru_cache(maxsize=None)
def sanitizers() -> tuple[str, ...]:
    """SANITIZE if this toolchain links it, else nothing (with a warning in the test summary)."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([compiler(), *SANITIZE, "-x", "c", "-", "-o", str(Path(tmp) / "probe")],
                              input="int main(void) { return 0; }\n", capture_output=True, text=True)
    if done.returncode != 0:
        warnings.warn(f"{compiler()} cannot build with {' '.join(SANITIZE)}; the C tests run without sanitizers")
        return ()
    return tuple(SANITIZE)


def build(out: Path, *sources: Path, includes: tuple[Path, ...] = (WIRE,)) -> Path:
    """Compile and link `sources` into the executable `out`; a compiler error fails the test with its message."""
    cmd = [compiler(), *FLAGS, *sanitizers(), *(f"-I{p}" for p in includes), *map(str, sources), "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)}\n{done.stderr}", pytrace=False)
    return out


def env() -> dict[str, str]:
    return {**os.environ, **SANITIZER_ENV}
