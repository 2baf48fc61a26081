"""The JSON sidecar beside every engine `detrt build` writes: what built it, for what, from what.

An engine runs only with the TensorRT flavour and version it was built with, and on the GPU it was
built for (standard TensorRT: that very GPU model; TensorRT-RTX: one of its target compute
capabilities). The sidecar records them (and the ONNX metadata that drives pre- and post-processing),
and loading checks them first, so a mismatch is a clear message instead of a crash deep inside TensorRT.
Sidecars without `tensorrt_flavour` (written before TensorRT-RTX support) are standard TensorRT's.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from detrt.detectors import write_json_atomic

from ...errors import EngineMismatchError
from .flavour import RTX, TENSORRT

FORMAT = 1
CHECKED = {"tensorrt_version": "TensorRT", "gpu": "GPU", "compute_capability": "compute capability"}


def sidecar_path(engine: str | Path) -> Path:
    """`model.engine` -> `model.engine.json`."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def write_sidecar(engine: str | Path, sidecar: dict) -> Path:
    """Write the sidecar of `engine` atomically."""
    return write_json_atomic(sidecar_path(engine), {"format": FORMAT, **sidecar})


def _rebuild_hint(engine: Path, sidecar: dict | None, flags: tuple[str, ...] = ()) -> str:
    """The command that rebuilds `engine`, every argument shell-quoted (a sidecar's ONNX path is untrusted)."""
    onnx = (sidecar or {}).get("onnx")
    source = onnx.get("path") if isinstance(onnx, dict) and isinstance(onnx.get("path"), str) else "MODEL.onnx"
    command = ["detrt", "build", source, "-o", str(engine), *flags]
    return f"rebuild it here with `{' '.join(shlex.quote(part) for part in command)}`"


def flavour(sidecar: dict) -> str:
    """The TensorRT flavour that built the engine of `sidecar`."""
    return sidecar.get("tensorrt_flavour") or TENSORRT


def _field_problem(sidecar: dict) -> str | None:
    """The first field of a sidecar with the wrong type (None when all checked fields are right)."""
    if sidecar.get("tensorrt_flavour", TENSORRT) not in (TENSORRT, RTX):
        return f"tensorrt_flavour must be {TENSORRT!r} or {RTX!r}, got {sidecar['tensorrt_flavour']!r:.60}"
    if not isinstance(sidecar["tensorrt_version"], str):
        return f"tensorrt_version must be a string, got {sidecar['tensorrt_version']!r:.60}"
    if flavour(sidecar) == RTX:  # built ahead of time for a list of targets, on no GPU
        targets = sidecar.get("compute_capabilities")
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
            return f"compute_capabilities must be a list of versions like \"8.6\", got {targets!r:.60}"
        return _props_problem(sidecar)
    if not isinstance(sidecar["gpu"], str):
        return f"gpu must be a string, got {sidecar['gpu']!r:.60}"
    if not isinstance(sidecar["compute_capability"], (str, int, float)) or isinstance(sidecar["compute_capability"], bool):
        return f"compute_capability must be a version like \"8.6\", got {sidecar['compute_capability']!r:.60}"
    return _props_problem(sidecar)


def _props_problem(sidecar: dict) -> str | None:
    """The metadata and ONNX fields' problem, if any."""
    props = sidecar["metadata_props"]
    if not isinstance(props, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in props.items()):
        return "metadata_props must be an object of strings"
    if "onnx" in sidecar and not (isinstance(sidecar["onnx"], dict) and isinstance(sidecar["onnx"].get("path", ""), str)):
        return "onnx must be an object whose path is a string"
    return None


def read_sidecar(engine: str | Path) -> dict:
    """The sidecar of `engine`; an error with the fix when it is missing or unreadable."""
    engine, path = Path(engine), sidecar_path(engine)
    if not path.is_file():
        raise EngineMismatchError(f"{engine} has no sidecar {path.name}, so detrt cannot check which TensorRT and GPU "
                                  f"built it nor how to feed it; {_rebuild_hint(engine, None)}")
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise EngineMismatchError(f"the sidecar {path} is unreadable ({error}); {_rebuild_hint(engine, None)}") from None
    if not isinstance(sidecar, dict):
        raise EngineMismatchError(f"the sidecar {path} holds a JSON {type(sidecar).__name__}, not an object; "
                                  f"{_rebuild_hint(engine, None)}")
    missing = [key for key in (*CHECKED, "metadata_props") if key not in sidecar]
    if missing or sidecar.get("format") != FORMAT:
        raise EngineMismatchError(f"the sidecar {path} is not one this detrt writes (format {sidecar.get('format')}, "
                                  f"missing {missing}); {_rebuild_hint(engine, sidecar)}")
    problem = _field_problem(sidecar)
    if problem:
        raise EngineMismatchError(f"the sidecar {path} is invalid: {problem}; {_rebuild_hint(engine, sidecar)}")
    return sidecar


def mismatches(sidecar: dict, environment: dict) -> list[str]:
    """What differs between the build environment in `sidecar` and the current `environment`."""
    built, here = flavour(sidecar), environment["tensorrt_flavour"]
    if built != here:
        return [f"TensorRT flavour {built!r} (built) vs {here!r} (here)"]
    checked = {"tensorrt_version": CHECKED["tensorrt_version"]} if built == RTX else CHECKED
    found = [f"{label} {sidecar[key]!r} (built) vs {environment[key]!r} (here)"
             for key, label in checked.items() if str(sidecar[key]) != str(environment[key])]
    targets = [str(target) for target in sidecar.get("compute_capabilities") or []]
    if built == RTX and str(environment["compute_capability"]) not in targets:
        found.append(f"compute capability {environment['compute_capability']!r} (here) is not among the engine's "
                     f"targets {', '.join(targets)}")
    return found


def check_sidecar(sidecar: dict, environment: dict, engine: str | Path) -> None:
    """Refuse an engine built with another TensorRT flavour or version, or for another GPU, naming each
    difference and the fix."""
    found = mismatches(sidecar, environment)
    if found:
        here = environment["tensorrt_flavour"]
        flags = ("--flavour", "rtx", "--compute-capability", str(environment["compute_capability"])) if here == RTX else (
            ("--flavour", "tensorrt") if flavour(sidecar) != here else ())
        raise EngineMismatchError(f"{engine} was built for another TensorRT or GPU: {'; '.join(found)}. Engines run only "
                                  f"with the TensorRT they were built with, on the GPUs they target; "
                                  f"{_rebuild_hint(Path(engine), sidecar, flags)}")
