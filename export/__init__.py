"""detrt.export: PyTorch detectors to ONNX, with MSDA as a TensorRT plugin node or as portable ops, and
the ONNX helpers the layers above share (loading, passes, atomic saves, the ONNX Runtime session with
our custom ops)."""
from .deform_conv_nodes import DEFORM_CONV_PLUGIN
from .export_module import INPUT_NAME, OUTPUT_NAMES, RAW_OUTPUT_NAMES, ExportModule
from .exporter import (
                       DEFAULT_OPSET,
                       ExportError,
                       ExportOptions,
                       check_exportable,
                       export_onnx,
)
from .metadata import (
                       ModelMetadata,
                       NotADetrtModelError,
                       describe_detector,
                       read_metadata,
                       weights_fingerprint,
                       write_metadata,
)
from .msda_nodes import (
                       DETRT_FUSED_PLUGIN,
                       DETRT_PLUGIN,
                       MSDA_MODES,
                       NVIDIA_PLUGIN,
                       PluginNode,
)
from .onnx_passes import (
                       element_types,
                       finalize,
                       infer_shapes,
                       load_onnx,
                       plugin_nodes,
                       save_atomic,
                       simplify,
)
from .onnx_schemas import register_plugin_schemas
from .ort_plugins import create_session
from .patch import PatchError, PatchReport, patch_onnx
from .plugin_graph import validate_plugin_graph
from .report import ExportReport

__all__ = [
    "DEFAULT_OPSET", "DEFORM_CONV_PLUGIN", "DETRT_FUSED_PLUGIN", "DETRT_PLUGIN", "INPUT_NAME", "MSDA_MODES",
    "NVIDIA_PLUGIN", "OUTPUT_NAMES", "PatchError", "PatchReport", "RAW_OUTPUT_NAMES", "ExportError", "ExportModule", "ExportOptions",
    "ExportReport", "ModelMetadata", "NotADetrtModelError", "PluginNode", "check_exportable", "create_session",
    "describe_detector", "element_types", "export_onnx", "finalize", "infer_shapes", "load_onnx", "patch_onnx", "plugin_nodes",
    "read_metadata", "register_plugin_schemas", "save_atomic", "simplify", "validate_plugin_graph",
    "weights_fingerprint", "write_metadata",
]
