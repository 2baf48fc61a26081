"""The JSON sidecar beside every engine `detrt build` writes: what built it, for what, from what.

An engine runs only with the TensorRT version and GPU it was built for; the sidecar records them
(and the ONNX metadata that drives pre- and post-processing), and loading checks them first, so a
mismatch is a clear message instead of a crash deep inside TensorRT.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from detrt.detectors.atomic import write_json_atomic
from .errors import EngineMismatchError

FORMAT = 1
CHECKED = {"tensorrt_version": "TensorRT", "gpu": "GPU", "compute_capability": "compute capability"}


def sidecar_path(engine: str | Path) -> Path:
    """`model.engine` -> `model.engine.json`."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def write_sidecar(engine: str | Path, sidecar: dict) -> Path:
    """Write the sidecar of `engine` atomically."""
    return write_json_atomic(sidecar_path(engine), {"format": FORMAT, **sidecar})


def _rebuild_hint(engine: Path, sidecar: dict | None) -> str:
    """The command that rebuilds `engine`, every argument shell-quoted (a sidecar's ONNX path is untrusted)."""
    onnx = (sidecar or {}).get("onnx")
    source = onnx.get("path") if isinstance(onnx, dict) and isinstance(onnx.get("path"), str) else "MODEL.onnx"
    return f"rebuild it here with `detrt build {shlex.quote(source)} -o {shlex.quote(str(engine))}`"


def _field_problem(sidecar: dict) -> str | None:
    """The first field of a sidecar with the wrong type (None when all checked fields are right)."""
    for key in ("tensorrt_version", "gpu"):
        if not isinstance(sidecar[key], str):
            return f"{key} must be a string, got {sidecar[key]!r:.60}"
    if not isinstance(sidecar["compute_capability"], (str, int, float)) or isinstance(sidecar["compute_capability"], bool):
        return f"compute_capability must be a version like \"8.6\", got {sidecar['compute_capability']!r:.60}"
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
    return [f"{label} {sidecar[key]!r} (built) vs {environment[key]!r} (here)"
            for key, label in CHECKED.items() if str(sidecar[key]) != str(environment[key])]


def check_sidecar(sidecar: dict, environment: dict, engine: str | Path) -> None:
    """Refuse an engine built for another TensorRT version or GPU, naming each difference and the fix."""
    found = mismatches(sidecar, environment)
    if found:
        raise EngineMismatchError(f"{engine} was built for another TensorRT or GPU: {'; '.join(found)}. Engines run only "
                                  f"where they were built; {_rebuild_hint(Path(engine), sidecar)}")
