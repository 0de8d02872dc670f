"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def private_system_bus(monkeypatch):
    """A private dbus-daemon standing in for the D-Bus system bus; yields its address.

    DBUS_SYSTEM_BUS_ADDRESS points at it for the test (bleak finds BlueZ through it), so
    an emulated BlueZ (simulator.devices.bluez.FakeBlueZ) on this bus is what bleak sees.
    The daemon is stopped and the variable restored afterwards.
    """
    from edgehar.simulator.devices.bluez import PrivateBus

    with PrivateBus() as bus:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        yield bus.address


@pytest.fixture(scope="session")
def sessions(tmp_path_factory):
    """A tiny simulated data set (5 subjects, one 4 s bout of each activity): 3/1/1 split."""
    from edgehar.simulator.world import generate_dataset

    folder = tmp_path_factory.mktemp("sessions")
    generate_dataset(folder, subjects=5, repeats=1, bout_s=4.0, seed=3, progress=False)
    return folder


@pytest.fixture(scope="session")
def trained(sessions, tmp_path_factory):
    """`mmtsa_tiny` trained for 2 epochs on `sessions`: (run folder with bundle/, metrics)."""
    from edgehar.models.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(data=str(sessions), model="mmtsa_tiny", epochs=2, windows_per_bout=2, out=str(out), threads=2)
    return out, train(cfg, progress=False)
