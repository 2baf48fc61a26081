"""detrt.export: PyTorch detectors to ONNX, with MSDA as a TensorRT plugin node or as portable ops."""
from .export_module import INPUT_NAME, OUTPUT_NAMES, RAW_OUTPUT_NAMES
from .exporter import ExportError, ExportOptions, check_exportable, export_onnx
from .metadata import ModelMetadata, NotADetrtModelError, read_metadata, weights_fingerprint
from .msda_nodes import DETRT_FUSED_PLUGIN, DETRT_PLUGIN, MSDA_MODES, NVIDIA_PLUGIN, PluginNode
from .report import ExportReport

__all__ = [
    "DETRT_FUSED_PLUGIN", "DETRT_PLUGIN", "INPUT_NAME", "MSDA_MODES", "NVIDIA_PLUGIN", "OUTPUT_NAMES", "RAW_OUTPUT_NAMES", "ExportError", "ExportOptions", "ExportReport", "ModelMetadata",
    "NotADetrtModelError", "PluginNode", "check_exportable", "export_onnx", "read_metadata", "weights_fingerprint",
]
