"""The mutation smoke script's pieces (the run itself is a documented command, not a test)."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "mutation_smoke.py"
spec = importlib.util.spec_from_file_location("mutation_smoke", SCRIPT)
smoke = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = smoke  # dataclasses look their module up there
spec.loader.exec_module(smoke)


def test_sites_are_code_tokens_only(tmp_path, monkeypatch):
    monkeypatch.setattr(smoke, "ROOT", tmp_path)
    src = tmp_path / "m.py"
    src.write_text('"""a < b in a docstring"""\n# x + y in a comment\ndef f(a, b):\n    return round(a) < b + 2  # "<="\n')
    sites = smoke.mutation_sites(src)
    assert [(m.line, m.before, m.after) for m in sites] == [
        (4, "round", "int"), (4, "<", "<="), (4, "+", "-"), (4, "2", "3")]


def test_apply_changes_exactly_one_token(tmp_path, monkeypatch):
    monkeypatch.setattr(smoke, "ROOT", tmp_path)
    src = tmp_path / "m.py"
    src.write_text("def f(a, b):\n    return a <= b and a < 2\n")
    less = [m for m in smoke.mutation_sites(src) if m.before == "<"][0]
    assert smoke.apply(src.read_text(), less) == "def f(a, b):\n    return a <= b and a <= 2\n"


def test_a_mutant_the_tests_catch_is_killed_and_the_source_restored(tmp_path, monkeypatch):
    monkeypatch.setattr(smoke, "ROOT", tmp_path)
    (tmp_path / "m.py").write_text("def f(a):\n    return a + 1\n")
    (tmp_path / "test_m.py").write_text("from m import f\n\ndef test_f():\n    assert f(1) == 2\n")
    plus, one = smoke.mutation_sites(tmp_path / "m.py")
    assert smoke.run_mutant(plus, ("test_m.py",), timeout_s=120) == "killed"
    assert (tmp_path / "m.py").read_text() == "def f(a):\n    return a + 1\n"
    (tmp_path / "test_m.py").write_text("from m import f\n\ndef test_f():\n    assert f(1) > 0\n")
    assert smoke.run_mutant(one, ("test_m.py",), timeout_s=120) == "survived"  # 1 -> 2 still > 0
