"""The simulated world and its data-set generator: a seeded person doing workbench
activities, seen by a glove, a wrist IMU and a chest camera (and, in other sensor
layouts, IMUs on the forearm, chest and ankle at another rate).

`world.py` (SimulatedWorld, generate_recording, generate_dataset) is built from
`subject.py`, `activities.py`, `signals.py`, `sensors.py`, `placements.py`, `render.py`
and the devices' datasheet (`datasheet.py`). It stands in for hardware in training data, the
demo and tests. The fake devices that play it over real transports live apart, in
`devices/`; nothing here imports them.
"""
