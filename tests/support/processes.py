"""Running the build tools from tests: a command's output, or a failure showing its tail."""
from __future__ import annotations

import subprocess


def run(command: list[str], timeout: int) -> str:
    """stdout + stderr of `command`; the test fails, with the output's tail, when it exits non-zero."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed ({result.returncode}):\n{output[-8000:]}"
    return output
