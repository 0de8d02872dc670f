"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def private_system_bus(monkeypatch):
    """A private dbus-daemon standing in for the D-Bus system bus; yields its address.

    DBUS_SYSTEM_BUS_ADDRESS points at it for the test (bleak finds BlueZ through it), so
    an emulated BlueZ (firmware_bridge.sim.bluez.FakeBlueZ) on this bus is what bleak sees.
    The daemon is stopped and the variable restored afterwards.
    """
    from edgehar.firmware_bridge.sim.bluez import PrivateBus

    with PrivateBus() as bus:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        yield bus.address
