"""Fake devices that play the simulated world over real transports.

One block player (`player.py`) plays a world on a clock into block sinks: simulated
firmware speaking the wire protocol on a pseudo-terminal (`firmware.py`), BLE
peripherals on an emulated BlueZ (`ble_peripheral.py`, `bluez.py`) and the simulated
camera (`camera.py`). `rig.py` assembles them into the demo's rig, the feed the CLI
hands to the app; `transport.py` is the `sim://` transport. The world itself
(`edgehar.simulator`) never imports this room, and the app never imports it at all.
"""
