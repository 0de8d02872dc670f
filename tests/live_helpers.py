"""Helpers shared by the live-view, live and record tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

from edgehar.contract.manifest import Manifest, ModalitySpec, StreamSpec
from edgehar.simulator.datasheet import GLOVE_CHANNELS, IMU_CHANNELS

_BUNDLES: dict[tuple, Path] = {}


def sim_manifest(window_s: float = 1.0, streams: tuple[str, ...] = ("camera", "glove", "imu"),
                 labels: tuple[str, ...] = ("neutral", "hammer", "screwdriver"), model: str = "mmtsa_tiny",
                 sensor_type: str = "gaf") -> Manifest:
    """The input contract of a model over the simulated devices (sensors as GAF images or raw series);
    streams other than camera and glove are IMUs (imu, imu2, ...: a SensorLayout's)."""
    specs = {"camera": StreamSpec("camera", "camera", 30.0), "glove": StreamSpec("glove", "sensor", 100.0, GLOVE_CHANNELS)}
    mods = {"camera": ModalitySpec("rgb", "camera", "frames"), "glove": ModalitySpec("glove", "glove", sensor_type, GLOVE_CHANNELS)}
    for imu in set(streams) - set(specs):
        specs[imu] = StreamSpec(imu, "sensor", 100.0, IMU_CHANNELS)
        mods[imu] = ModalitySpec(imu, imu, sensor_type, IMU_CHANNELS)
    return Manifest(streams=tuple(specs[s] for s in streams), modalities=tuple(mods[s] for s in streams), labels=labels,
                    window_s=window_s, hop_s=0.25, num_segments=3, gaf_k=16, model=model)


def tiny_bundle(root: Path, window_s: float = 1.0, streams: tuple[str, ...] = ("camera", "glove", "imu"),
                model: str = "mmtsa_tiny") -> Path:
    """An untrained bundle of a tiny model, mmtsa_tiny unless told (seconds to write; predictions
    need no accuracy here), its sensors fed as the family's recipe says; cached per process."""
    key = (window_s, streams, model)
    if key not in _BUNDLES or not (_BUNDLES[key] / "manifest.json").is_file():
        import torch
        from dataclasses import replace

        from edgehar.models.bundle import write_bundle
        from edgehar.models.registry import create_model

        torch.manual_seed(0)
        sensor_type = create_model(model).config.input_recipe.sensor_type
        manifest = sim_manifest(window_s, streams, model=model, sensor_type=sensor_type)
        net = create_model(model, input_shapes=manifest.input_shapes(), num_classes=len(manifest.labels))
        manifest = replace(manifest, model_config=net.config.to_dict())
        folder = root / f"bundle-{model}-{window_s:g}-{'-'.join(streams)}"
        _BUNDLES[key] = write_bundle(folder, net, manifest)
    return _BUNDLES[key]
