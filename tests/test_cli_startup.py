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
