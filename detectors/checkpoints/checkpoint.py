"""Reading checkpoint files safely: no arbitrary unpickling, clear errors for bad files."""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import DetrtError, MissingFileError
from ..limits import MAX_TENSOR_ELEMENTS

_ZIP, _PICKLE = b"PK\x03\x04", b"\x80"  # how torch.save's zip format and legacy pickles begin
# Buffers that profiling tools (thop) add to every module of Deformable DETR checkpoints.
_PROFILER_KEYS = ("total_params", "total_ops")


class CheckpointError(DetrtError, ValueError):
    """A checkpoint file that cannot be used, with the reason and what to do about it."""


@dataclass
class Checkpoint:
    """A state dict and the training arguments saved with it (None when absent)."""

    state_dict: dict[str, Tensor]
    args: argparse.Namespace | None


def load_file(path: str | Path) -> object:
    """The content of a checkpoint file, read with `weights_only=True` (argparse.Namespace allowed)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types here; each becomes one clear message
        raise _load_error(path, error) from error


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load `path` safely (`load_file`) and extract the state dict and saved args."""
    return Checkpoint(*_extract_state_dict(Path(path), load_file(path)))


def _looks_like(path: Path) -> str | None:
    """What a file that is not a PyTorch checkpoint looks like, from its first bytes (None: it may be one)."""
    with path.open("rb") as stream:
        head = stream.read(64)
    if not head:
        return "an empty file (0 bytes)"
    if head.startswith(_ZIP) or head[:1] == _PICKLE:
        return None
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON file"
    if head[:1] == b"\x08" and b"\x12" in head[2:4]:  # protobuf: ir_version, then producer_name
        return "an ONNX model (give it to `detrt run` or `detrt build`, not as a checkpoint)"
    return "neither a zip archive nor a pickle (random or unknown bytes)"


def _load_error(path: Path, error: Exception) -> CheckpointError:
    message = str(error)
    first_line = message.splitlines()[0].split(". ")[0] if message.strip() else type(error).__name__
    looks = _looks_like(path)
    if looks:
        return CheckpointError(f"{path} is not a PyTorch checkpoint: it looks like {looks}; give the .pth file "
                               "that torch.save wrote")
    if "central directory" in message or "zip archive" in message or isinstance(error, EOFError) or "truncated" in message:
        return CheckpointError(f"{path} is truncated or corrupt ({first_line}); download or save it again")
    refused = re.search(r"unsupported GLOBAL ([\w.]+)|Unsupported global: GLOBAL ([\w.]+)", message)
    if refused:
        return CheckpointError(
            f"{path} needs arbitrary unpickling (it holds {refused.group(1) or refused.group(2)}), which detrt refuses: "
            "it could run code. If you trust the file, convert it once to a plain state dict: python -c \"import "
            "torch; c = torch.load('IN', weights_only=False); torch.save({'model': c['model'] if 'model' in c else "
            "c.state_dict()}, 'OUT')\"")
    return CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {first_line}); "
                           "download or save it again")


def _check_tensor(path: Path, key: str, tensor: Tensor) -> None:
    """Refuse a tensor that is larger than any weight, or that is not stored in full (a stride-0 or
    short storage would become a huge allocation once copied)."""
    if tensor.numel() > MAX_TENSOR_ELEMENTS:
        raise CheckpointError(f"{path}: tensor {key} declares {tuple(tensor.shape)} = {tensor.numel()} elements, more "
                              f"than any detector weight ({MAX_TENSOR_ELEMENTS}); the file is corrupt or crafted")
    if tensor.numel() == 0:
        return
    extent = 1 + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
    stored = tensor.untyped_storage().nbytes() // max(tensor.element_size(), 1) - tensor.storage_offset()
    if any(stride == 0 and size > 1 for size, stride in zip(tensor.shape, tensor.stride())) or extent > stored \
            or extent < tensor.numel():
        raise CheckpointError(f"{path}: tensor {key} of shape {tuple(tensor.shape)} is not stored in full (strides "
                              f"{tensor.stride()}, {stored} stored elements); the file is corrupt or crafted")


def _check_finite(path: Path, state_dict: dict[str, Tensor]) -> None:
    """Refuse weights holding NaN or infinity: every output computed from them would be meaningless."""
    for key, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            count = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: tensor {key} holds {count} NaN or infinite value(s); the weights are "
                                  "broken (diverged training or a corrupt file): use another checkpoint")


def _extract_state_dict(path: Path, content: object) -> tuple[dict[str, Tensor], argparse.Namespace | None]:
    if not isinstance(content, dict):
        raise CheckpointError(f"{path} holds a {type(content).__name__}, not a dict with a state dict")
    args = content.get("args") if isinstance(content.get("args"), argparse.Namespace) else None
    for key in ("model", "state_dict"):
        if isinstance(content.get(key), dict):
            content = content[key]
            break
    tensors = {k: v for k, v in content.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors: expected a state dict or a dict with 'model' "
                              f"(found keys {sorted(map(str, content))[:10]})")
    state_dict = {}
    for key, value in tensors.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key.rsplit(".", 1)[-1] not in _PROFILER_KEYS:
            _check_tensor(path, key, value)
            state_dict[key] = value
    _check_finite(path, state_dict)
    return state_dict, args
