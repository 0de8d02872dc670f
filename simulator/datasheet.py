"""Datasheet of the simulated devices: channels, units, ranges, rates, frame size.

These are properties of the sim devices themselves, as a real device's datasheet
would state them. They are kept in one table so the generator, the session writer
and anyone plotting a recording read the same names and units. Nothing downstream
of training may copy them: a model's input contract lives in its bundle manifest.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChannelSpec:
    """One sensor channel: its column name, unit and the range the device saturates at."""

    name: str
    unit: str
    lo: float
    hi: float


GLOVE_SPECS: tuple[ChannelSpec, ...] = (
    ChannelSpec("flex_thumb", "bend 0..1", 0.0, 1.0),
    ChannelSpec("flex_index", "bend 0..1", 0.0, 1.0),
    ChannelSpec("flex_middle", "bend 0..1", 0.0, 1.0),
    ChannelSpec("flex_ring", "bend 0..1", 0.0, 1.0),
    ChannelSpec("flex_pinky", "bend 0..1", 0.0, 1.0),
    ChannelSpec("acc_x", "g", -16.0, 16.0),
    ChannelSpec("acc_y", "g", -16.0, 16.0),
    ChannelSpec("acc_z", "g", -16.0, 16.0),
    ChannelSpec("gyro_x", "deg/s", -2000.0, 2000.0),
    ChannelSpec("gyro_y", "deg/s", -2000.0, 2000.0),
    ChannelSpec("gyro_z", "deg/s", -2000.0, 2000.0),
    ChannelSpec("pressure_thumb", "pressure 0..1", 0.0, 1.0),
)
IMU_SPECS: tuple[ChannelSpec, ...] = GLOVE_SPECS[5:11]  # the wrist IMU has the same inertial chip

GLOVE_CHANNELS: tuple[str, ...] = tuple(c.name for c in GLOVE_SPECS)
IMU_CHANNELS: tuple[str, ...] = tuple(c.name for c in IMU_SPECS)

GLOVE_RATE_HZ = 100.0
IMU_RATE_HZ = 100.0
CAMERA_FPS = 30.0
FRAME_WIDTH = 160
FRAME_HEIGHT = 120

STREAM_RATES: dict[str, float] = {"glove": GLOVE_RATE_HZ, "imu": IMU_RATE_HZ, "camera": CAMERA_FPS}
STREAM_SPECS: dict[str, tuple[ChannelSpec, ...]] = {"glove": GLOVE_SPECS, "imu": IMU_SPECS}
