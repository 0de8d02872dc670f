"""Mutation smoke check of the pure core: do the tests notice a planted bug?

    .venv/bin/python tools/mutation_smoke.py [--per-module 25] [--seed 0] [--out docs/mutation.json]

For each core module (GAF, segment sampling, frames, wire protocol, CSV lines, clock
mapping) it plants one small bug at a time — a comparison made strict or loose (`<` vs
`<=`), an operator swapped (`+`/`-`, `*`/`/`), `min`/`max`, `round`/`int`, `and`/`or`,
`True`/`False`, an integer off by one — in the source file on disk, runs the test files
that cover that module (`pytest -x`), and restores the file. A mutant whose tests still
pass *survived*: a bug the suite would not catch. The survivors are listed (file:line,
before -> after) in the JSON and the summary table, to be read: some are equivalent
mutants (e.g. `<` vs `<=` on values that never tie), the rest are missing tests.

Why a small script and not mutmut or cosmic-ray: both mutate every operator into every
alternative and run the whole configured test command for each, which is hours on a
2-core machine; here each module is tested only by its own test files and a seeded
sample of its mutation sites is taken, so the smoke check runs in about 20 minutes.
Not part of `make test`. The source is restored after each mutant, and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import subprocess
import sys
import time
import tokenize
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module file -> the test files that cover it
TARGETS: dict[str, tuple[str, ...]] = {
    "contract/preprocess/gaf.py": ("tests/test_gaf.py",),
    "contract/preprocess/sampling.py": ("tests/test_sampling.py", "tests/test_inputs.py"),
    "contract/preprocess/frames.py": ("tests/test_frames.py",),
    "firmware_bridge/protocol.py": ("tests/test_protocol.py",),
    "firmware_bridge/csvlines.py": ("tests/test_csvlines.py",),
    "firmware_bridge/clock.py": ("tests/test_clock.py",),
}

SWAPS = {
    "<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==",
    "+": "-", "-": "+", "*": "/", "/": "*", "//": "/",
    "min": "max", "max": "min", "round": "int", "and": "or", "or": "and", "True": "False", "False": "True",
}


@dataclass
class Mutant:
    file: str
    line: int
    col: int
    before: str
    after: str
    outcome: str = ""  # "killed", "survived", "timeout" or "invalid" (does not compile)


def mutation_sites(path: Path) -> list[Mutant]:
    """Every token of the module a SWAPS rule or the integer rule applies to (code only:
    strings, comments and docstrings are separate tokens and never touched)."""
    text = path.read_text()
    sites = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        (line, col), s = tok.start, tok.string
        if tok.type in (tokenize.OP, tokenize.NAME) and s in SWAPS:
            sites.append(Mutant(str(path.relative_to(ROOT)), line, col, s, SWAPS[s]))
        elif tok.type == tokenize.NUMBER and s.isdigit():
            sites.append(Mutant(str(path.relative_to(ROOT)), line, col, s, str(int(s) + 1)))
    return sites


def apply(text: str, m: Mutant) -> str:
    lines = text.splitlines(keepends=True)
    row = lines[m.line - 1]
    assert row[m.col:m.col + len(m.before)] == m.before, (m, row)
    lines[m.line - 1] = row[:m.col] + m.after + row[m.col + len(m.before):]
    return "".join(lines)


def run_mutant(m: Mutant, tests: tuple[str, ...], timeout_s: float) -> str:
    path = ROOT / m.file
    original = path.read_text()
    mutated = apply(original, m)
    try:
        compile(mutated, m.file, "exec")
    except SyntaxError:
        return "invalid"
    path.write_text(mutated)
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=ROOT, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return "timeout"  # an infinite loop is caught too, in effect
    finally:
        path.write_text(original)
    return "survived" if proc.returncode == 0 else "killed"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-module", type=int, default=25, help="mutation sites sampled per module (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's test run")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "mutation.json")
    args = p.parse_args(argv)
    dirty = subprocess.run(["git", "status", "--porcelain", *TARGETS], cwd=ROOT, capture_output=True, text=True).stdout
    if dirty.strip():
        print(f"mutation_smoke: error: commit or stash changes to the core first:\n{dirty}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    started = time.time()
    results: list[Mutant] = []
    for target, tests in TARGETS.items():
        sites = mutation_sites(ROOT / target)
        chosen = sites if not args.per_module else sorted(rng.sample(sites, min(args.per_module, len(sites))),
                                                          key=lambda m: (m.line, m.col))
        for m in chosen:
            m.outcome = run_mutant(m, tests, args.timeout)
            results.append(m)
            print(f"{m.outcome:8s} {m.file}:{m.line} {m.before} -> {m.after}", flush=True)
    counts = {k: sum(m.outcome == k for m in results) for k in ("killed", "survived", "timeout", "invalid")}
    report = {"command": "python tools/mutation_smoke.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "seconds": round(time.time() - started), "counts": counts,
              "per_module": {t: {k: sum(m.outcome == k for m in results if m.file == t) for k in counts} for t in TARGETS},
              "survivors": [asdict(m) for m in results if m.outcome == "survived"]}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{counts['killed']} killed, {counts['survived']} survived, {counts['timeout']} timeout, "
          f"{counts['invalid']} invalid in {report['seconds']} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
