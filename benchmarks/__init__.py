"""Measurement, one floor below the roof: it may use every layer but the CLI.

`bench` (the `edgehar bench` harness: each bundle in its own process, rows gathered in
`table`, written out by `report`), `meters` (energy counters), and stand-alone
scripts run as `python benchmarks/NAME.py`: `gaf_vs_official`, `decoder_throughput`,
`transport_latency`. Results and the commands that made them: RESULTS.md and
docs/results.md.
"""
