"""Model families (one file each) and the timm-style registry that names them.

Names are imported on first use (PEP 562), so `edgehar.models.datasets` and
`edgehar.models.metrics` — numpy only — load without torch on a deploy-only install.
"""

from importlib import import_module

_EXPORTS = {
    "BackboneConfig": ".backbone",
    "MobileNetV2Backbone": ".backbone",
    "count_macs": ".flops",
    "MMTSA": ".mmtsa",
    "MMTSAConfig": ".mmtsa",
    "ModelConfigError": ".registry",
    "ModelNotFoundError": ".registry",
    "create_model": ".registry",
    "list_models": ".registry",
    "model_config_class": ".registry",
    "register_model": ".registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
