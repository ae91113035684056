"""The fixture tree's llama-server, built on this machine (cmake and cc, every instruction set off,
so it runs on any CPU) and started on loopback: the stand-in's API checked without a lab."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from wrinklefree_lab.helpers import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "bitnet"
PORTABLE = ["-DGGML_NATIVE=OFF", "-DGGML_AVX=OFF", "-DGGML_AVX2=OFF", "-DGGML_FMA=OFF", "-DGGML_F16C=OFF", "-DGGML_OPENMP=OFF"]


def build(workdir: Path) -> Path:
    """The stand-in llama-server from a copy of the fixture tree (the kernel header generated
    first, as the role does), built as llama.cpp's own project: the top level wants Clang."""
    tree = workdir / "bitnet"
    shutil.copytree(FIXTURE, tree)
    subprocess.run([sys.executable, tree / "utils" / "codegen_tl2.py", "--model", "bitnet_b1_58-large",
                    "--BM", "256,128,256", "--BK", "96,192,96", "--bm", "32,32,32"], check=True)
    build_dir = workdir / "build"
    subprocess.run(["cmake", "-S", tree / "3rdparty" / "llama.cpp", "-B", build_dir, *PORTABLE,
                    "-DLLAMA_BUILD_EXAMPLES=ON", "-DLLAMA_BUILD_SERVER=ON"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", build_dir, "--target", "llama-server"], check=True, capture_output=True)
    return build_dir / "examples" / "server" / "llama-server"


def model(path: Path, load_ms: int = 0) -> Path:
    subprocess.run([sys.executable, FIXTURE / "make_gguf.py", path, "--name", "tiny", "--load-ms", str(load_ms)], check=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running stand-in on 127.0.0.1: `url`, `process`; stopped with stop()."""

    def __init__(self, binary: Path, gguf: Path, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([binary, "-m", gguf, "--port", str(self.port), *args],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # Listening comes first, the model after it (503 meanwhile), as upstream.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"llama-server exited {self.process.returncode}: {self.process.stderr.read()}")
                time.sleep(0.02)
        raise RuntimeError("llama-server did not listen within 30 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
