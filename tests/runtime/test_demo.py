"""`detrt demo` as a new user meets it: a clean clone, a fresh virtual environment, one command.

The virtual environment sees this interpreter's site-packages as plain paths (a .pth file of paths),
so the dependencies need no download while the host's own editable detrt (an import hook installed
by a .pth *import* line there) stays out: the demo runs the clone's code and library.
"""
from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_LIMIT_S = 120


def _run(command: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DETRT_", "PYTHON"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_demo_in_a_fresh_virtual_environment_from_a_clean_clone(tmp_path: Path) -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    clone, venv = tmp_path / "clone", tmp_path / "venv"
    _run(["git", "clone", "--quiet", str(REPO), str(clone)], tmp_path, 300)
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, 300)
    python = venv / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path, 60)
    (Path(purelib.stdout.strip()) / "_host_site_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", str(clone)],
         tmp_path, 900)
    where = _run([str(python), "-c", "import detrt.runtime; print(detrt.runtime.__file__)"], tmp_path, 60)
    assert Path(where.stdout.strip()).resolve().is_relative_to(clone.resolve()), where.stdout

    start = time.perf_counter()
    result = _run([str(venv / "bin" / "detrt"), "demo", "--out", "demo-out"], tmp_path, 600)
    elapsed = time.perf_counter() - start
    assert elapsed < DEMO_LIMIT_S, f"detrt demo took {elapsed:.0f} s"
    assert "agreement_with_pytorch: OK" in result.stdout, result.stdout
    summary = json.loads((tmp_path / "demo-out" / "summary.json").read_text())
    assert summary["images"] == 8 and summary["detections"] > 0
    assert summary["agreement_with_pytorch"]["agree"] and summary["agreement_with_pytorch"]["matched"] > 0
    assert summary["backend"] in ("onnxruntime", "tensorrt")
    pictures = sorted((tmp_path / "demo-out" / "images").glob("demo_*.png"))
    assert len(pictures) == 8 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pictures)
