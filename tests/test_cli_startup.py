"""The roof starts light: `edgehar --help` and the runtime verbs never load torch.

The CLI defines every verb's flags itself and imports a verb's machinery only when the
verb runs. If a module-level import (or a parser helper borrowed from a lower package)
pulled in models, quantize or benchmarks, `edgehar live` on a deploy-only board would
pay torch's start-up or fail outright. Checked in a fresh interpreter, since this test
process has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

HEAVY = ("torch", "edgehar.models", "edgehar.quantize", "edgehar.benchmarks")

SCRIPT = textwrap.dedent(
    """
    import contextlib, io, json, sys

    import edgehar.cli as cli

    parser = cli._parser()
    verbs = ["demo", "live", "record", "train", "evaluate", "export", "bench", "models",
             "simulate", "simulate dataset", "simulate glove"]
    helped = []
    for verb in [""] + verbs:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                parser.parse_args(verb.split() + ["--help"])
            except SystemExit:
                pass
        helped.append(bool(out.getvalue().startswith("usage: edgehar")))
    parser.parse_args(["bench", "b1", "b2", "--energy-estimate", "5", "--no-dense"])
    heavy = json.loads(sys.argv[1])
    print(json.dumps({
        "helped": helped,
        "loaded": sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy)),
    }))
    """
)


def test_help_and_parsing_load_no_torch_models_quantize_or_benchmarks():
    result = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(HEAVY)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(report["helped"])  # every verb's --help printed its usage
    assert report["loaded"] == []


def test_bench_flags_reach_run_bench(monkeypatch, tmp_path, capsys):
    """The bench flags are defined in the CLI, away from `run_bench`: each reaches its argument."""
    import edgehar.benchmarks.bench as bench
    import edgehar.benchmarks.report as report
    from edgehar.cli import main

    got = {}

    def fake_run_bench(bundles, **kwargs):
        got.update(kwargs, bundles=bundles)
        return SimpleNamespace(rows=[])

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    monkeypatch.setattr(report, "to_markdown", lambda table: "the table")
    rc = main(["bench", "a", "b", "--out", str(tmp_path), "--runs", "7", "--max-runs", "9", "--warmup", "3",
               "--threads", "2", "--data", "sim", "--energy-estimate", "4.5", "--idle-s", "1.5", "--no-dense",
               "--gaf-reps", "0"])
    assert rc == 0 and capsys.readouterr().out == "the table\n"
    assert [str(b) for b in got.pop("bundles")] == ["a", "b"]
    log = got.pop("log")
    assert got == dict(runs=7, warmup=3, threads=2, meter="estimate:4.5", out_dir=tmp_path, data="sim", max_runs=9,
                       idle_s=1.5, dense=False, gaf_reps=0)
    assert callable(log)
    main(["bench", "a", "--meter", "rapl"])
    assert got["meter"] == "rapl" and got["dense"] is True and got["gaf_reps"] == 20 and got["runs"] == 200


def _edgehar(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgehar", *args], capture_output=True, text=True, timeout=120)


def test_version_and_a_bare_edgehar_as_other_tools_do():
    import importlib.metadata

    version = _edgehar("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"edgehar {importlib.metadata.version('edgehar')}"
    bare = _edgehar()
    assert bare.returncode == 0 and bare.stdout.startswith("usage: edgehar") and "demo" in bare.stdout and not bare.stderr


def test_typos_get_the_verbs_usage_and_a_did_you_mean_never_a_prefix_match():
    """Issue 14: `--sec 5` silently meant `--seconds 5` (argparse's prefix matching), an
    unknown flag got the top level's usage, and a mistyped verb no suggestion."""
    verb = _edgehar("dmeo")
    assert verb.returncode == 2 and "invalid choice: 'dmeo'" in verb.stderr and verb.stderr.rstrip().endswith("did you mean 'demo'?")
    prefix = _edgehar("live", "--sec", "5")
    assert prefix.returncode == 2 and prefix.stderr.startswith("usage: edgehar live")
    assert prefix.stderr.rstrip().endswith("unrecognized arguments: --sec 5; did you mean '--seconds'?")
    flag = _edgehar("live", "--secnds", "5")
    assert flag.returncode == 2 and flag.stderr.startswith("usage: edgehar live")
    assert flag.stderr.rstrip().endswith("error: unrecognized arguments: --secnds 5; did you mean '--seconds'?")
    nested = _edgehar("simulate", "glove", "--serial", "--sede", "3")
    assert nested.returncode == 2 and nested.stderr.startswith("usage: edgehar simulate glove")
    assert nested.stderr.rstrip().endswith("did you mean '--seed'?")
