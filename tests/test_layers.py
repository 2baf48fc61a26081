"""The package root and the layer rule: plugins < detectors < export < calibrate < runtime.

A module may import its own layer freely, and a lower layer only through that layer's package
(`from detrt.export import load_onnx`, not `from detrt.export.onnx_passes import load_onnx`), so each
package's `__all__` is the interface actually used. The named subpackages `detectors.zoo` and
`detectors.architectures` count as packages of their own.
"""
from __future__ import annotations

import ast
import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import detrt

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_SUBPACKAGES = {("detectors", "zoo"), ("detectors", "architectures")}


def imported_layers(path: Path, layer: str) -> list[tuple[int, tuple[str, ...]]]:
    """(line, imported detrt module path) of every import in `path` (a module of `layer`) that names
    another layer, relative imports resolved."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.startswith("detrt."):
                module = tuple(node.module.split(".")[1:])
            elif node.level > 0:
                module = parts[:len(parts) - node.level] + tuple(node.module.split(".") if node.module else ())
            else:
                continue
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("detrt.")]
            if not names:
                continue
            module = tuple(names[0].split(".")[1:])
        else:
            continue
        if module and module[0] != layer:
            found.append((node.lineno, module))
    return found


def test_root_gives_the_installed_version_and_loads_layers_lazily() -> None:
    assert detrt.__version__ == importlib.metadata.version("detrt")
    code = ("import sys, detrt; assert 'torch' not in sys.modules, 'import detrt loaded torch'; "
            "assert detrt.runtime.__name__ == 'detrt.runtime'; print(sorted(detrt.LAYERS))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        detrt.nonexistent  # noqa: B018


@pytest.mark.parametrize("layer", detrt.LAYERS)
def test_every_name_in_all_exists(layer: str) -> None:
    package = importlib.import_module(f"detrt.{layer}")
    missing = [name for name in getattr(package, "__all__", []) if not hasattr(package, name)]
    assert not missing, f"detrt.{layer}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("layer", detrt.LAYERS)
def test_imports_point_down_through_package_interfaces(layer: str) -> None:
    rank = {name: i for i, name in enumerate(detrt.LAYERS)}
    upward, past_interface = [], []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for line, module in imported_layers(path, layer):
            where = f"{path.relative_to(ROOT)}:{line} imports detrt.{'.'.join(module)}"
            if rank[module[0]] > rank[layer]:
                upward.append(where)
            elif len(module) > 1 and module[:2] not in PUBLIC_SUBPACKAGES:
                past_interface.append(where)
    assert not upward, f"upward imports: {upward}"
    assert not past_interface, f"imports past a layer's __init__ (add the name to its __all__): {past_interface}"
