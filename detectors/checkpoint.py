"""Reading checkpoint files safely: no arbitrary unpickling, clear errors for bad files."""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .errors import DetrtError

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
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types here; each becomes one clear message
        raise _load_error(path, error) from error


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load `path` safely (`load_file`) and extract the state dict and saved args."""
    return Checkpoint(*_extract_state_dict(Path(path), load_file(path)))


def _load_error(path: Path, error: Exception) -> CheckpointError:
    message = str(error)
    refused = re.search(r"unsupported GLOBAL ([\w.]+)|Unsupported global: GLOBAL ([\w.]+)", message)
    if refused or "Weights only load failed" in message:
        what = f" (it holds {refused.group(1) or refused.group(2)})" if refused else ""
        return CheckpointError(
            f"{path} needs arbitrary unpickling{what}, which detrt refuses: it could run code. If you trust the "
            "file, convert it once to a plain state dict: python -c \"import torch; c = torch.load('IN', "
            "weights_only=False); torch.save({'model': c['model'] if 'model' in c else c.state_dict()}, 'OUT')\"")
    if "central directory" in message or "zip archive" in message or isinstance(error, EOFError):
        return CheckpointError(f"{path} is truncated or corrupt ({message.splitlines()[0]}); download or save it again")
    return CheckpointError(f"{path} is not a PyTorch checkpoint ({type(error).__name__}: {message.splitlines()[0] if message else ''})")


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
            state_dict[key] = value
    return state_dict, args
