"""detrt.calibrate: precision is decided in the ONNX (TensorRT 10/11 strongly typed networks).

- `convert_fp16`: FP32 export -> FP16 graph with a keep-in-FP32 list (`KeepList`).
- `calibrate_model`: FP32 export + images -> INT8 graph with explicit Q/DQ, a calibration cache, and
  optionally the sensitivity search that keeps the worst layers in float for an AP budget.
"""
from .calibration_images import (
           IMAGE_SUFFIXES,
           CalibrationDataError,
           list_images,
           readable_images,
)
from .fp16 import KeepList, convert_fp16
from .int8 import CalibrationCacheError
from .model_files import PrecisionError
from .pipeline import CalibrationSettings, calibrate_model

__all__ = ["IMAGE_SUFFIXES", "CalibrationCacheError", "CalibrationDataError", "CalibrationSettings", "KeepList",
           "PrecisionError", "calibrate_model", "convert_fp16", "list_images", "readable_images"]
