"""detrt.detectors: DETR-family detectors in PyTorch, the MSDA op, pre/post-processing, loaders, data,
evaluation and training, and the helpers every layer above uses (errors, limits, atomic writes).

`zoo` and `architectures` are subpackages of their own; training is imported only when asked for.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .architectures import all_architectures
from .architectures import names as architecture_names
from .atomic import write_bytes_atomic, write_json_atomic
from .checkpoints.checkpoint import CheckpointError, read_checkpoint
from .checkpoints.loader import (
    StateDictMismatchError,
    check_state_dict,
    detector_from_state_dict,
    load,
)
from .config import DetectorConfig
from .data.coco import CocoDataset
from .data.images import ImageReadError, image_size, read_image
from .data.shapes_dataset import render, write_dataset
from .detections import Detections
from .detector import Detector, as_image_tensor
from .errors import DetrtError, InputError, MissingFileError
from .evaluate import coco_metrics, coco_results, evaluate_detector
from .limits import LimitError, check_input_size
from .models.build import build_model, set_msda_impl
from .models.ms_deform_attn import MSDeformAttn, MsdaModule
from .models.msda_op import METHODS as MSDA_METHODS
from .models.msda_op import ms_deform_attn, ms_deform_attn_reference
from .preprocess import PreprocessSpec, normalize, preprocess, resize, to_float_image
from .tempfiles import temporary_folder

if TYPE_CHECKING:
    from .training.train import TrainSettings, train

__all__ = [
    "CheckpointError", "CocoDataset", "Detections", "Detector", "DetectorConfig", "DetrtError", "ImageReadError",
    "InputError", "LimitError", "MSDA_METHODS", "MSDeformAttn", "MissingFileError", "MsdaModule", "PreprocessSpec", "StateDictMismatchError",
    "TrainSettings", "all_architectures", "architecture_names", "as_image_tensor", "build_model",
    "check_input_size", "check_state_dict", "coco_metrics", "coco_results", "detector_from_state_dict",
    "evaluate_detector", "from_hf", "image_size", "load", "ms_deform_attn", "ms_deform_attn_reference",
    "normalize", "preprocess", "read_checkpoint", "read_image", "render", "resize", "set_msda_impl",
    "temporary_folder", "to_float_image", "train", "write_bytes_atomic", "write_dataset", "write_json_atomic",
]

_LAZY = {"TrainSettings": ".training.train", "train": ".training.train"}  # torch.optim and friends: on demand


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def from_hf(model_or_dir: object) -> Detector:
    """A `Detector` from a HuggingFace detector (module or saved directory): DETR, Conditional and Deformable
    DETR converted to detrt's models, RT-DETR run as transformers' module with detrt's MSDA."""
    from .checkpoints.hf import (
        from_hf as convert,  # transformers is imported only when asked for
    )

    return convert(model_or_dir)
