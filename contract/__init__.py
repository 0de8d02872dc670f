"""The input contract, torch-free, at the bottom of the house.

Everything a bundle promises about its inputs: the manifest (`manifest.py`), reading a
bundle folder (`bundle.py`), the table of model formats (`formats.py`), timestamped
series (`series.py`) and the preprocessing that turns series into model inputs
(`preprocess/`: GAF, segment sampling, frames). Training, export, benchmarks and the
live runtime all read this package; it imports nothing of the project but
`edgehar.errors`.
"""
