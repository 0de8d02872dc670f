"""tools/under_load.py's pieces: the run itself is a documented command (docs/testing.md)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from under_load import REALTIME_TESTS, tally  # noqa: E402


def test_tally_folds_repeats_per_test():
    report = "\n".join([
        "PASSED tests/test_a.py::test_x[1-3]",
        "PASSED tests/test_a.py::test_x[2-3]",
        "FAILED tests/test_a.py::test_x[3-3] - AssertionError: late",
        "ERROR tests/test_b.py::test_y[1-3] - RuntimeError",
        "PASSED tests/test_c.py::test_other[1-3]",
    ])
    counts = tally(report, ["tests/test_a.py::test_x", "tests/test_b.py::test_y"])
    assert counts == {"tests/test_a.py::test_x": {"passed": 2, "failed": 1},
                      "tests/test_b.py::test_y": {"passed": 0, "failed": 1}}


def test_the_default_tests_exist():
    root = Path(__file__).resolve().parents[1]
    for nodeid in REALTIME_TESTS:
        path, name = nodeid.split("::")
        assert f"def {name}(" in (root / path).read_text(), nodeid
