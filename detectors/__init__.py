"""detrt.detectors: DETR-family detectors in PyTorch, the MSDA op, pre/post-processing and loaders."""
from .models.build import build_model, set_msda_impl
from .checkpoints.checkpoint import CheckpointError, read_checkpoint
from .config import DetectorConfig
from .detections import Detections
from .detector import Detector
from .checkpoints.loader import StateDictMismatchError, check_state_dict, detector_from_state_dict, load
from .models.msda_op import ms_deform_attn, ms_deform_attn_reference
from .preprocess import PreprocessSpec, preprocess

__all__ = [
    "CheckpointError", "Detections", "Detector", "DetectorConfig", "PreprocessSpec", "StateDictMismatchError",
    "build_model", "check_state_dict", "detector_from_state_dict", "from_hf", "load", "ms_deform_attn",
    "ms_deform_attn_reference", "preprocess", "read_checkpoint", "set_msda_impl",
]


def from_hf(model_or_dir: object) -> Detector:
    """Convert a HuggingFace DETR / Conditional DETR / Deformable DETR (module or saved directory)."""
    from .checkpoints.hf import from_hf as convert  # transformers is imported only when asked for

    return convert(model_or_dir)
