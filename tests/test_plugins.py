"""Plug-ins by entry point: a separate installed package adds a device URL scheme and a
bundle format, and both are reached through the ordinary `open_transport` /
`load_bundle`; what edgehar itself provides is registered the same way."""

import asyncio
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgehar.app.backends import BACKEND_GROUP, load_bundle
from edgehar.contract.bundle import BundleError
from edgehar.contract.formats import FORMATS
from edgehar.contract.manifest import Manifest, ModalitySpec, StreamSpec
from edgehar.firmware_bridge.transport import TransportError, known_schemes, open_transport
from edgehar.plugins import load_plugin

PLUGIN = "edgehar_testplug"

MODULE = '''
"""A package that is not edgehar: one transport, one backend."""
import json

import numpy as np

from edgehar.firmware_bridge.transport import Chunk, Transport


class EchoTransport(Transport):
    """echo://TEXT yields TEXT once."""

    async def connect(self):
        pass

    async def close(self):
        pass

    async def chunks(self):
        yield Chunk(self.clock(), self.url.target.encode())


class ConstantBackend:
    """Runs a "model" that is a JSON list of logits."""

    name = "constant"

    def __init__(self, model_path, num_threads=None):
        self.logits = np.asarray(json.loads(model_path.read_text()), np.float32)

    def run(self, inputs):
        return np.tile(self.logits, (len(inputs[0]), 1))
'''

ENTRY_POINTS = f"""
[edgehar.transports]
echo = {PLUGIN}:EchoTransport
broken = {PLUGIN}_missing:Transport

[edgehar.backends]
constant = {PLUGIN}:ConstantBackend
vanished = {PLUGIN}:NoSuchBackend
"""


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A throw-away distribution (module + dist-info with entry points) on sys.path for one test."""
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{PLUGIN}.py").write_text(textwrap.dedent(MODULE))
    info = site / f"{PLUGIN}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PLUGIN}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop(PLUGIN, None)


def _bundle(folder, fmt: str, model_file: str, model: str):
    manifest = Manifest(streams=(StreamSpec("glove", "sensor", 100.0, ("flex", "acc")),),
                        modalities=(ModalitySpec("glove", "glove", "gaf", ("flex", "acc")),),
                        labels=("rest", "wave"), format=fmt, model_file=model_file)
    folder.mkdir()
    manifest.save(folder)
    (folder / model_file).write_text(model)
    return folder


def test_edgehars_own_schemes_and_backends_are_entry_points():
    assert {"serial", "ble", "replay", "sim"} <= set(known_schemes())
    for f in FORMATS:
        backend = load_plugin(BACKEND_GROUP, f.backend)
        assert backend is not None and backend.name == f.backend, f.name


def test_a_separate_package_adds_a_transport_scheme(installed_plugin):
    assert "echo" in known_schemes()
    assert PLUGIN not in sys.modules  # listing the schemes imports nothing

    async def first_chunk(url):
        async with open_transport(url) as transport:
            async for chunk in transport:
                return chunk.data

    assert asyncio.run(first_chunk("echo://hello")) == b"hello"


def test_a_separate_package_adds_a_bundle_format(installed_plugin, tmp_path):
    folder = _bundle(tmp_path / "bundle", "constant", "model.json", "[0.5, 2.0]")
    manifest, backend = load_bundle(folder)
    assert manifest.format == "constant" and backend.name == "constant"
    logits = backend.run(tuple(np.zeros((1, *s), np.float32) for s in manifest.input_shapes()))
    assert logits.tolist() == [[0.5, 2.0]]


def test_plugins_that_cannot_import_are_one_line_errors_when_used(installed_plugin, tmp_path):
    assert "broken" in known_schemes()  # discovery lists it without importing it
    with pytest.raises(TransportError) as info:
        open_transport("broken://x")
    msg = str(info.value)
    assert "\n" not in msg and "'broken'" in msg and f"No module named '{PLUGIN}_missing'" in msg
    assert open_transport("echo://still-fine").url.target == "still-fine"

    folder = _bundle(tmp_path / "bundle", "vanished", "model.bin", "")
    with pytest.raises(BundleError) as info:
        load_bundle(folder)
    msg = str(info.value)
    assert "\n" not in msg and "format 'vanished'" in msg and "NoSuchBackend" in msg


def test_an_unknown_format_names_the_plugged_in_ones(installed_plugin, tmp_path):
    folder = _bundle(tmp_path / "bundle", "tensorrt", "model.engine", "")
    with pytest.raises(BundleError, match=r"format 'tensorrt' is not supported \(known: \[.*'constant'.*'litert'"):
        load_bundle(folder)


def test_a_url_imports_only_its_own_transport():
    """Discovery reads metadata only: opening sim:// loads neither pyserial's nor bleak's module."""
    code = ("import sys; from edgehar.firmware_bridge.transport import open_transport; "
            "open_transport('sim://glove'); "
            "loaded = [m for m in ('edgehar.firmware_bridge.transports.serial', "
            "'edgehar.firmware_bridge.transports.ble', 'serial', 'bleak') if m in sys.modules]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
