"""nnunet-lightweight: the LightEcho 2M-parameter echocardiography U-Net as an nnU-Net v2 plugin.

Public functions are imported lazily so that `lightecho --help` and the start-up hook stay fast.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "build_lightecho_network": "nnunet_lightweight.network",
    "LightEchoUNet": "nnunet_lightweight.network",
    "simpson_biplane_volume": "nnunet_lightweight.clinical.volumes",
    "simpson_single_plane_volume": "nnunet_lightweight.clinical.volumes",
    "ef_table": "nnunet_lightweight.clinical.ejection_fraction",
    "agreement": "nnunet_lightweight.clinical.agreement",
    "cine_volume_curve": "nnunet_lightweight.clinical.cine",
    "segment_sequence": "nnunet_lightweight.clinical.cine",
    "evaluate_folder": "nnunet_lightweight.evaluation",
    "compare_models": "nnunet_lightweight.evaluation",
    "demo": "nnunet_lightweight.workflows.demo",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nnunet_lightweight' has no attribute {name!r}")


__all__ = sorted(_LAZY)
