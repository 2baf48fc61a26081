"""A local Triton Inference Server from PyPI: its own environment, and a bounded start and stop.

PyPI's `nvidia-pytriton` wheel carries a real `tritonserver` with the Python backend only (no ONNX
Runtime or TensorRT backend); it runs on CPU-only machines. Its Python-backend stub passes arrays
through a pybind11 that reads numpy 1 array descriptors, so with numpy 2 it sees wrong sizes. The
server therefore gets its own venv (numpy < 2 first on its path) that also sees this environment's
packages (detrt, torch, onnxruntime) behind its own, through a `.pth` file.

    python -m detrt.runtime.triton.server prepare      # once: venv + backends in $DETRT_TRITON_HOME
    python -m detrt.runtime.triton.server serve REPO   # serve a `detrt triton` repository

The stub needs the libpython of this interpreter (`sysconfig` LIBDIR; with the system's libpython of
another patch level it fails), the wheel's bundled libraries, and the venv's `python3` first on PATH.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import site
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from detrt.detectors import write_json_atomic

from ..errors import DetrtRuntimeError

PYTRITON = "nvidia-pytriton==0.7.0"  # tritonserver 2.51.0
SERVER_NUMPY = "numpy>=1.24,<2"
HOME_VARIABLE = "DETRT_TRITON_HOME"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0


class TritonServerError(DetrtRuntimeError):
    """The local Triton server is not prepared, or it did not start or stop."""


def default_home() -> Path:
    """$DETRT_TRITON_HOME, else ~/.cache/detrt/triton."""
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".cache" / "detrt" / "triton")


def _site_dirs() -> list[str]:
    """This interpreter's site-packages folders (their .pth files bring in editable installs)."""
    folders = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        folders.append(site.getusersitepackages())
    return folders


class ServerEnvironment:
    """The server venv and backend folder under `home`, made by `prepare_environment`."""

    def __init__(self, home: str | Path | None = None) -> None:
        self.home = Path(home) if home is not None else default_home()
        self.venv = self.home / "venv"
        self.python = self.venv / "bin" / "python"
        self.backends = self.home / "backends"
        self.marker = self.home / "prepared.json"

    def _package_dir(self) -> Path:
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        return self.venv / "lib" / version / "site-packages"

    @property
    def tritonserver(self) -> Path:
        """The server binary."""
        return self._package_dir() / "pytriton" / "tritonserver" / "bin" / "tritonserver"

    def expected(self) -> dict:
        """What a prepared environment must match to be reused."""
        return {"pytriton": PYTRITON, "python": sys.version.split()[0], "site_dirs": _site_dirs()}

    def is_prepared(self) -> bool:
        """True when `prepare_environment` finished here for this interpreter and its site folders."""
        try:
            return json.loads(self.marker.read_text()) == self.expected() and self.tritonserver.is_file()
        except (OSError, ValueError):
            return False

    def require(self) -> None:
        """Raise a one-line error with the fix when the environment is missing."""
        if not self.is_prepared():
            raise TritonServerError(f"no Triton server environment in {self.home} for this Python; create it with "
                                    f"`{sys.executable} -m detrt.runtime.triton.server prepare` (set "
                                    f"{HOME_VARIABLE} to put it elsewhere)")

    def environ(self) -> dict[str, str]:
        """The process environment the server and its Python stub need."""
        libraries = [sysconfig.get_config_var("LIBDIR"), str(self._package_dir() / "nvidia_pytriton.libs")]
        inherited = os.environ.get("LD_LIBRARY_PATH")
        return {**os.environ, "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                "LD_LIBRARY_PATH": os.pathsep.join(libraries + ([inherited] if inherited else [])),
                "PYTHONNOUSERSITE": "1"}


def prepare_environment(home: str | Path | None = None, progress: Callable[[str], None] = print) -> ServerEnvironment:
    """Create (or reuse) the server venv: nvidia-pytriton and numpy < 2 of its own, this environment's
    packages behind them, and a backend folder holding the Python-backend stub for this Python."""
    environment = ServerEnvironment(home)
    if environment.is_prepared():
        progress(f"Triton server environment ready in {environment.home}")
        return environment
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise TritonServerError(f"{sys.executable} was built without a shared libpython, which Triton's Python-backend "
                                "stub needs; use a Python built with --enable-shared (pyenv: PYTHON_CONFIGURE_OPTS="
                                "--enable-shared)")
    for stale in (environment.marker, environment.venv, environment.backends):
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink(missing_ok=True)
    environment.home.mkdir(parents=True, exist_ok=True)
    progress(f"creating the Triton server venv in {environment.venv}")
    subprocess.run([sys.executable, "-m", "venv", str(environment.venv)], check=True)
    progress(f"installing {PYTRITON} and {SERVER_NUMPY} (about 60 MB)")
    # before the .pth exists, so that pip sees (and would replace) nothing of this environment
    subprocess.run([str(environment.python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    PYTRITON, SERVER_NUMPY], check=True)
    lines = "".join(f"import site; site.addsitedir({folder!r})\n" for folder in _site_dirs())
    (environment._package_dir() / "zz_detrt_environment.pth").write_text(lines)
    server = environment.tritonserver.parent.parent
    stub = server / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonServerError(f"{PYTRITON} has no Python-backend stub for Python {sys.version_info.major}."
                                f"{sys.version_info.minor}; use Python 3.8 to 3.13")
    shutil.copytree(server / "backends", environment.backends)
    shutil.copy2(stub, environment.backends / "python" / stub.name)
    write_json_atomic(environment.marker, environment.expected())
    progress(f"Triton server environment ready in {environment.home}")
    return environment


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TritonServer:
    """`tritonserver` over a model repository on 127.0.0.1, on ports of its own; a context manager.

    Start waits (bounded) for /v2/health/ready; stop ends the server's process group by its pid."""

    def __init__(self, repository: str | Path, environment: ServerEnvironment | None = None,
                 log_path: str | Path | None = None, ready_timeout_s: float = READY_TIMEOUT_S,
                 host: str = "127.0.0.1", ports: tuple[int, int, int] | None = None) -> None:
        self.repository = Path(repository)
        self.environment = environment or ServerEnvironment()
        self.log_path = Path(log_path) if log_path is not None else self.repository.parent / "tritonserver.log"
        self.ready_timeout_s = ready_timeout_s
        self.host = host
        self.http_port, self.grpc_port, self.metrics_port = ports or (free_port(), free_port(), free_port())
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        """host:port of the HTTP endpoint."""
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """host:port of the gRPC endpoint."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus metrics page."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def metric(self, name: str, model: str) -> float:
        """The sum of Prometheus metric `name` over the versions of `model` (0 when absent)."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        label = f'model="{model}"'
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") and label in line)

    def command(self) -> list[str]:
        """The server's command line."""
        return [str(self.environment.tritonserver), f"--model-repository={self.repository.resolve()}",
                f"--backend-directory={self.environment.backends}", f"--http-address={self.host}",
                f"--grpc-address={self.host}", f"--metrics-address={self.host}", f"--http-port={self.http_port}",
                f"--grpc-port={self.grpc_port}", f"--metrics-port={self.metrics_port}", "--allow-gpu-metrics=false",
                "--exit-timeout-secs=2", "--strict-readiness=true"]

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> TritonServer:
        """Start the server and wait until it is ready (or raise with the log's tail)."""
        self.environment.require()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.environment.environ(),
                                            start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TritonServerError(f"tritonserver exited with code {self.process.returncode} before it was "
                                        f"ready; its log ({self.log_path}) ends:\n{self.log_tail()}")
            if self._ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise TritonServerError(f"tritonserver was not ready after {self.ready_timeout_s:.0f} s; its log "
                                f"({self.log_path}) ends:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the server's process group (its Python stubs included), SIGKILL after a bounded wait."""
        if self.process is None or self.process.poll() is not None:
            return
        group = self.process.pid  # start_new_session: the group id is the server's pid
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)
        try:  # stubs that outlived the server
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """`prepare` the server environment, or `serve` a repository until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m detrt.runtime.triton.server", description=__doc__.split("\n")[0])
    parser.add_argument("--home", help=f"environment folder (default ${HOME_VARIABLE} or ~/.cache/detrt/triton)")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("prepare", help="create or reuse the server venv and backend folder")
    serve = sub.add_parser("serve", help="serve a model repository on 127.0.0.1 until Ctrl-C")
    serve.add_argument("repository")
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--grpc-port", type=int, default=8001)
    serve.add_argument("--metrics-port", type=int, default=8002)
    args = parser.parse_args(argv)
    try:
        if args.action == "prepare":
            prepare_environment(args.home)
            return 0
        server = TritonServer(args.repository, ServerEnvironment(args.home),
                              ports=(args.http_port, args.grpc_port, args.metrics_port))
        with server:
            print(f"serving {args.repository}: HTTP {server.http_url}, gRPC {server.grpc_url}, metrics "
                  f"{server.metrics_url}; log {server.log_path}; Ctrl-C stops", flush=True)
            while server.process is not None and server.process.poll() is None:
                time.sleep(1)
    except KeyboardInterrupt:
        return 0
    except (OSError, subprocess.CalledProcessError, DetrtRuntimeError) as error:
        print(f"triton_server: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
