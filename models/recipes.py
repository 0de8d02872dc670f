"""Named input recipes for GAF models: the edge recipe we ship and MMTSA's paper mode.

`edgehar train --recipe paper` feeds MMTSA as its paper and official code do
(Gao et al., sec. 3.1-3.2); the default `edge` recipe is what the shipped bundles and the
live app were built with. Every option lands in the bundle manifest (the one source of
truth the live app reads), except the backbone widths, which land in `model_config`:

| option | edge (default) | paper | where it is read |
|---|---|---|---|
| sensor images | one image per stream, C channels (12 for the glove) | one per sensor: x/y/z of a triaxial sensor as the 3 channels | `split_sensors` -> manifest modalities |
| grey levels | the float field in [-1, 1] | eq. 5: min-max × 255, truncated to uint8 | manifest `gaf_grey` |
| image side | K (32) | 224 | manifest `gaf_size` |
| K-sample window | inside the observation window | inside its segment (eq. 6) | manifest `window_bounds` |
| backbone | MobileNetV2-style, width 0.5, d = 64 | width 1.0, d = 128 | `model_config` |

Choices where the paper is silent or differs from our devices:
- A sensor is the channels sharing a name prefix (`acc_x, acc_y, acc_z` -> `acc`). The
  paper's sensors are all triaxial; a glove also has 5 flex sensors and one pressure
  pad, which become a 5-channel and a 1-channel image of their own (one modality and one
  backbone each, as the paper gives every sensor).
- The paper's backbone is BN-Inception (ImageNet-pretrained); no pretrained weights can be
  fetched here and BN-Inception does not export to the edge runtimes we target, so
  "wider" means our MobileNetV2-style backbone at full width (1.0 instead of 0.5) and
  d = 128 instead of 64, trained from scratch. Deeper stage lists cost far more than a
  2-core machine can train (MobileNetV2's own stages to 96 channels: 124 M MACs per
  prediction at 32 px, 3.7 G at 224, against the edge recipe's 6.7 M); `--set stages=...`
  (model settings from the CLI) reaches them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..contract.manifest import SENSOR_TYPES, ModalitySpec
from ..errors import EdgeharError

SENSOR_IMAGES = ("stream", "sensor")


class RecipeError(EdgeharError, ValueError):
    """An unknown recipe name, or a recipe the chosen model cannot take."""


@dataclass(frozen=True)
class Recipe:
    """A named input recipe: the manifest's imaging options and the backbone widths."""

    sensor_images: str = "stream"  # one of SENSOR_IMAGES
    gaf_size: int = 0  # manifest gaf_size: 0 = K
    gaf_grey: str = "float"  # manifest gaf_grey
    window_bounds: str = "window"  # manifest window_bounds
    model_config: dict[str, Any] = field(default_factory=dict)  # under the user's own overrides


RECIPES: dict[str, Recipe] = {
    "edge": Recipe(),
    "paper": Recipe(
        sensor_images="sensor",
        gaf_size=224,
        gaf_grey="uint8",
        window_bounds="segment",
        model_config={"width": 1.0, "feature_dim": 128},  # twice the edge recipe's channels and d
    ),
}


def get_recipe(name: str) -> Recipe:
    """The recipe by name; unknown names fail with the known ones."""
    try:
        return RECIPES[name]
    except KeyError:
        raise RecipeError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})") from None


def sensor_groups(channels: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Channels grouped by sensor, the name before the first "_", in first-seen order:
    (acc_x, acc_y, acc_z, gyro_x, ...) -> {"acc": (acc_x, acc_y, acc_z), "gyro": (...)}."""
    groups: dict[str, list[str]] = {}
    for c in channels:
        groups.setdefault(c.split("_", 1)[0], []).append(c)
    return {k: tuple(v) for k, v in groups.items()}


def split_sensors(modalities: tuple[ModalitySpec, ...]) -> tuple[ModalitySpec, ...]:
    """Each sensor modality split into one modality per sensor (MMTSA sec. 3.1: a triaxial
    sensor is one 3-channel image). A modality that holds one sensor keeps its name; the
    others become `<modality>_<sensor>` (glove -> glove_flex, glove_acc, glove_gyro,
    glove_pressure). Calibrated ranges follow their channels."""
    out: list[ModalitySpec] = []
    for m in modalities:
        groups = sensor_groups(m.channels) if m.type in SENSOR_TYPES else {}
        if len(groups) <= 1:
            out.append(m)
            continue
        ranges = dict(zip(m.channels, m.ranges))
        for sensor, chans in groups.items():
            out.append(replace(m, name=f"{m.name}_{sensor}", channels=chans,
                               ranges=tuple(ranges[c] for c in chans) if m.ranges else ()))
    return tuple(out)
