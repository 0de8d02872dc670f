"""Fake devices that play the simulated world over real transports.

Simulated firmware speaking the wire protocol on a pseudo-terminal (`firmware.py`),
BLE peripherals on an emulated BlueZ (`ble_peripheral.py`, `bluez.py`), the `sim://`
transport (`transport.py`) and the real-time player that feeds them (`player.py`).
The world itself (`edgehar.simulator`) never imports this room.
"""
