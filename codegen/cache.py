"""Caches: each distinct kernel source compiles once per process; generated kernels on disk.

The disk cache maps a key (the kernel's text, the codegen options, and the versions of torch,
triton and fastc's code generator) to a KernelSpec as JSON, stored with its key and the sha256
of its text; an entry that fails to parse or to verify (another key inside: a swapped or copied
file; a checksum mismatch: an edited or truncated one) is ignored, rebuilt and rewritten. Nothing
is pickled. The native CPU target's lowered modules live under cpu/ with the same checks
(codegen/cpu/module_cache.py). A kernel's Triton source is imported from py/<name>_<hash>.py, and only
after the file is checked against that hash (a mismatch is rewritten first).

These checks catch damage and mix-ups, not an attacker: whoever can write the cache directory
can write an entry that verifies, and its code runs in this process. A cache directory is trusted
code, as Inductor's and Triton's are; point FASTC_CACHE_DIR only at a directory no one else
writes. FASTC_CACHE_DIR chooses the directory (default ~/.cache/fastc); "0" or "off" disables it.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import linecache
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("fastc")

STATS = {"compiled": 0, "disk_hits": 0, "disk_misses": 0, "disk_corrupt": 0,
         "cpu_disk_hits": 0, "cpu_disk_misses": 0, "cpu_disk_corrupt": 0}
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
        entry = json.loads(path.read_bytes().decode("utf-8"))
        if not isinstance(entry, dict):
            raise ValueError("not an entry")
        if entry.get("key") != key:
            raise ValueError("written for another key (a swapped or copied file)")
        text = entry["spec"]
        if not isinstance(text, str) or sha256(text) != entry["sha256"]:
            raise ValueError("checksum mismatch (edited or truncated)")
        json.loads(text)
    except FileNotFoundError:
        STATS["disk_misses"] += 1
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        STATS["disk_corrupt"] += 1
        log.warning("fastc: rebuilding damaged cache entry %s: %s", path, e)
        return None
    STATS["disk_hits"] += 1
    return text


def store_spec(key: str, text: str) -> None:
    root = cache_dir()
    if root is None:
        return
    entry = json.dumps({"key": key, "spec": text, "sha256": sha256(text)})
    try:
        _atomic_write(root / "kernels" / f"{key}.json", entry)
    except OSError:
        pass  # a read-only or full cache directory only costs the next process a rebuild


def _atomic_write(path: Path, text: str) -> None:
    """Writes `text` to `path` whole or not at all: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def compile_source(source: str, fn_name: str):
    """The `@triton.jit` function `fn_name` of `source`, compiled once per process per source.

    Triton reads a kernel's source from its file, so the source is written to a .py file (in the
    cache directory, or a scratch directory when the cache is off) named by the sha256 of the
    source. A file already there is used only when its bytes hash to that name; one that does not
    (edited, truncated, swapped) is rewritten first, with a log line. The module runs the verified
    text (not whatever the file holds by then), and the lines Triton's `inspect.getsource` reads
    are pinned to that text too.
    """
    key = sha256(source)
    if key in _COMPILED:
        return _COMPILED[key]
    root = cache_dir()
    folder = root / "py" if root is not None else Path(_scratch())
    path = folder / f"{fn_name}_{key[:16]}.py"
    try:
        _verified_source_file(path, source, key)
    except OSError:
        path = Path(_scratch()) / path.name
        _atomic_write(path, source)
    name = f"fastc_kernel_{fn_name}_{key[:16]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    lines = source.splitlines(keepends=True)
    linecache.cache[str(path)] = (len(source), None, lines, str(path))  # mtime None: never reread
    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - fastc's own generated code
    STATS["compiled"] += 1
    _COMPILED[key] = getattr(module, fn_name)
    return _COMPILED[key]


def _verified_source_file(path: Path, source: str, key: str) -> None:
    """Makes `path` hold exactly `source` (whose sha256 is `key`)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        _atomic_write(path, source)
        return
    if hashlib.sha256(data).hexdigest() != key:
        STATS["disk_corrupt"] += 1
        log.warning("fastc: rewriting damaged kernel source %s (its content does not match its hash)", path)
        _atomic_write(path, source)


def _scratch() -> str:
    if not _SCRATCH:
        _SCRATCH.append(tempfile.mkdtemp(prefix="fastc-kernels-"))
    return _SCRATCH[0]
