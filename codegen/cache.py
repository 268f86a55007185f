"""Caches: each distinct kernel source compiles once per process; generated kernels on disk.

The disk cache maps a key (the kernel's text, the codegen options, and the versions of torch,
triton and fastc's code generator) to a KernelSpec as JSON, stored with the sha256 of its text;
an entry that fails to parse or to verify is ignored and rebuilt. Nothing is pickled.
FASTC_CACHE_DIR chooses the directory (default ~/.cache/fastc); "0" or "off" disables it.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path

STATS = {"compiled": 0, "disk_hits": 0, "disk_misses": 0, "disk_corrupt": 0}
_COMPILED: dict[str, object] = {}
_SCRATCH: list[str] = []


def cache_dir() -> Path | None:
    value = os.environ.get("FASTC_CACHE_DIR")
    if value is None:
        return Path.home() / ".cache" / "fastc"
    if value.strip().lower() in ("", "0", "off", "false", "no"):
        return None
    return Path(value)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def versions() -> dict[str, str]:
    import torch
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    return {"torch": torch.__version__, "triton": triton_version, "fastc_codegen": _codegen_hash()}


@functools.lru_cache(maxsize=1)
def _codegen_hash() -> str:
    """Changes whenever the code generator's own source changes."""
    here = Path(__file__).parent
    h = hashlib.sha256()
    for path in sorted(here.rglob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def spec_key(kernel_text: str, options: dict) -> str:
    return sha256(json.dumps([kernel_text, options, versions()], sort_keys=True))


def load_spec(key: str) -> str | None:
    """The cached spec JSON for `key`, or None (absent, disabled, or failing verification)."""
    root = cache_dir()
    if root is None:
        return None
    path = root / "kernels" / f"{key}.json"
    try:
        entry = json.loads(path.read_text())
        text = entry["spec"]
        if not isinstance(text, str) or sha256(text) != entry["sha256"]:
            raise ValueError("checksum mismatch")
        json.loads(text)
    except FileNotFoundError:
        STATS["disk_misses"] += 1
        return None
    except (OSError, ValueError, KeyError, TypeError):
        STATS["disk_corrupt"] += 1
        return None
    STATS["disk_hits"] += 1
    return text


def store_spec(key: str, text: str) -> None:
    root = cache_dir()
    if root is None:
        return
    entry = json.dumps({"spec": text, "sha256": sha256(text)})
    try:
        _atomic_write(root / "kernels" / f"{key}.json", entry)
    except OSError:
        pass  # a read-only or full cache directory only costs the next process a rebuild


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def compile_source(source: str, fn_name: str):
    """The `@triton.jit` function `fn_name` of `source`, compiled once per process per source.

    Triton reads a kernel's source from its file, so the source is written to a .py file (in the
    cache directory, or a scratch directory when the cache is off) and imported from there.
    """
    key = sha256(source)
    if key in _COMPILED:
        return _COMPILED[key]
    root = cache_dir()
    folder = root / "py" if root is not None else Path(_scratch())
    path = folder / f"{fn_name}_{key[:16]}.py"
    try:
        if not path.exists() or path.read_text() != source:
            _atomic_write(path, source)
    except OSError:
        path = Path(_scratch()) / path.name
        _atomic_write(path, source)
    spec = importlib.util.spec_from_file_location(f"fastc_kernel_{fn_name}_{key[:16]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    STATS["compiled"] += 1
    _COMPILED[key] = getattr(module, fn_name)
    return _COMPILED[key]


def _scratch() -> str:
    if not _SCRATCH:
        _SCRATCH.append(tempfile.mkdtemp(prefix="fastc-kernels-"))
    return _SCRATCH[0]
