"""Start the `tritonserver` that the nvidia-pytriton wheel bundles, on a model repository, on loopback.

Used by the integration tests and for local runs (`python -m service.engines.tritonserver_process`).
On a GPU host use NVIDIA's Triton container instead; this is for a laptop, CI and CPU-only machines.

What the bundled binary needs, found by reading how pytriton starts it:
  - a backend directory holding the python backend plus the stub built for THIS interpreter's version,
    renamed `triton_python_backend_stub` (the wheel ships one stub per Python version);
  - LD_LIBRARY_PATH with the wheel's `nvidia_pytriton.libs` and the directory of this interpreter's
    libpython (the stub links libpython3.x.so dynamically);
  - PATH starting with this interpreter's bin directory, so the embedded Python finds the virtualenv
    (its `pyvenv.cfg`) and with it torch, diffusers and the rest.
The models find the project code by a path relative to their model.py, so no PYTHONPATH is needed.

The server runs with a fixed glibc mmap threshold (`MALLOC_MMAP_THRESHOLD_`, see `MMAP_THRESHOLD_BYTES`):
with glibc's default, a dynamic threshold, the first large block freed raises the threshold to its size
(up to 32 MiB), and every later block of that size comes from the heap arenas, which keep it once freed.
Each frames piece passes through tritonserver as such blocks (the response's tensor, its gRPC
serialization), so tritonserver's RSS grew with the video's length although nothing held the pieces
(bench/README.md, issue 7). With the threshold fixed, blocks from 1 MiB up are mmapped and returned when
freed. NVIDIA's container: set the same variable (or LD_PRELOAD its tcmalloc or jemalloc).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# glibc: blocks from this size up are mmapped and returned to the system when freed (setting it also
# turns off glibc's dynamic threshold, which kept freed frames pieces in tritonserver's heap).
MMAP_THRESHOLD_BYTES = 1024**2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pytriton_dir() -> Path:
    import pytriton  # the optional `triton` extra

    return Path(pytriton.__file__).resolve().parent


def prepare_backend_dir(target: Path) -> Path:
    """Copy the python backend and this interpreter's stub into `target`/python; return `target`."""
    server_dir = pytriton_dir() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise FileNotFoundError(f"nvidia-pytriton ships no python backend stub for Python {version}: {stub}")
    python_backend = target / "python"
    python_backend.mkdir(parents=True, exist_ok=True)
    for item in (server_dir / "backends" / "python").iterdir():
        if item.is_file():
            _copy_if_changed(item, python_backend / item.name)
    _copy_if_changed(stub, python_backend / "triton_python_backend_stub")
    return target


def _copy_if_changed(source: Path, target: Path) -> None:
    # A restart may find stubs of the killed server still exiting; rewriting a running binary fails.
    if target.exists():
        done, wanted = target.stat(), source.stat()
        if (done.st_size, int(done.st_mtime)) == (wanted.st_size, int(wanted.st_mtime)):
            return
    shutil.copy2(source, target)


def server_env() -> dict[str, str]:
    env = allocator_env()
    libs = [str(pytriton_dir().parent / "nvidia_pytriton.libs")]
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        libs.insert(0, str(sysconfig.get_config_var("LIBDIR")))
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
    # Not resolved: the venv's bin/python is a symlink, and the venv is found from the link's directory.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def allocator_env() -> dict[str, str]:
    """This process's environment with the fixed mmap threshold (unless the caller set one)."""
    env = dict(os.environ)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD_BYTES))
    return env


@dataclass
class TritonServerProcess:
    """One tritonserver on 127.0.0.1; ports are chosen once and kept across restarts."""

    model_repository: Path
    work_dir: Path
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    extra_args: list[str] = field(default_factory=list)
    # Another tritonserver (e.g. NVIDIA's container, with the TensorRT backend) instead of the bundled one.
    binary: Path | None = None
    backend_dir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    # Python-backend shared memory lives in /dev/shm under this prefix (new per start); a killed server
    # leaves it behind, so stop() and kill() remove it.
    shm_prefix: str = ""

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "tritonserver.log"

    def command(self) -> list[str]:
        if self.binary is None:
            binary = pytriton_dir() / "tritonserver" / "bin" / "tritonserver"
            backends = prepare_backend_dir(self.work_dir / "backends")
        else:
            binary, backends = self.binary, self.backend_dir or self.binary.parents[1] / "backends"
        return [
            str(binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            "--exit-timeout-secs=2",  # stop() kills what is left after that
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            *self.extra_args,
        ]

    def start(self, timeout_s: float = 180.0) -> None:
        self.http_port = self.http_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        self.metrics_port = self.metrics_port or free_port()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.shm_prefix = f"ltx_triton_{uuid.uuid4().hex[:8]}_"
        command = self.command()
        log.info("starting %s", " ".join(command))
        with self.log_path.open("ab") as log_file:
            # Own process group: stop() can end the server and its python stubs, and nothing else.
            env = server_env() if self.binary is None else allocator_env()
            self.proc = subprocess.Popen(
                command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.http_port}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited while starting:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"tritonserver not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the server with its stubs, as a crashed container would go; ports stay reserved."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None
        self._remove_shared_memory()

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGINT the server, then SIGKILL its process group; remove its shared memory. Idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver did not stop in %.0f s; killing it", grace_s)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group of the process we started, stubs included
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        self.proc = None
        self._remove_shared_memory()

    def _remove_shared_memory(self) -> None:
        if not self.shm_prefix:  # never started: nothing of ours to remove (and "*" would match all)
            return
        for region in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            region.unlink(missing_ok=True)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the bundled tritonserver on a model repository.")
    parser.add_argument("--model-repository", default="model_repository")
    parser.add_argument("--work-dir", default="var/tritonserver", help="backend copy and log live here")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    server = TritonServerProcess(
        Path(args.model_repository).resolve(),
        Path(args.work_dir).resolve(),
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
    )
    try:
        server.start()
        log.info("tritonserver ready: gRPC %s (log: %s)", server.grpc_url, server.log_path)
        assert server.proc is not None
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
