"""Model families (one file each) and the timm-style registry that names them."""

from .backbone import BackboneConfig, MobileNetV2Backbone
from .flops import count_macs
from .mmtsa import MMTSA, MMTSAConfig
from .registry import ModelConfigError, ModelNotFoundError, create_model, list_models, model_config_class, register_model

__all__ = [
    "BackboneConfig",
    "MMTSA",
    "MMTSAConfig",
    "MobileNetV2Backbone",
    "ModelConfigError",
    "ModelNotFoundError",
    "count_macs",
    "create_model",
    "list_models",
    "model_config_class",
    "register_model",
]
