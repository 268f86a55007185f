"""The disk cache of lowered modules (stage 08-llvm): <cache>/cpu/<key>.mlir.

The key covers the module text before lowering, the lowering pipeline and the versions; a hit
skips the MLIR pass pipeline (torch-mlir import and LLVM still run).
"""
from __future__ import annotations

import json
import logging

from ..cache import STATS, _atomic_write, cache_dir, sha256, versions

log = logging.getLogger("fastc")


def cache_key(module_text: str, pipeline: str) -> str:
    return sha256(json.dumps([module_text, pipeline, versions(), "cpu-1"]))


# Disk cache of lowered modules: <cache>/cpu/<key>.mlir, the LLVM-dialect module after a header
# line (an MLIR comment, so the file stays readable by mlir-opt) that names the entry's key, the
# sha256 of the module text and the versions that wrote it. An entry is used only when all of
# these match: a file swapped with another kernel's, edited, truncated, emptied or overwritten is
# rebuilt and rewritten (atomically), with a log line, instead of running other code or making
# the kernel run as ATen. The cache directory is trusted code all the same (docs/cpu.md).
CACHE_FORMAT = "fastc-cpu-2"
_HEADER = "// fastc cache entry: "


def entry_path(key: str):
    root = cache_dir()
    return None if root is None else root / "cpu" / f"{key}.mlir"


def entry_text(key: str, text: str) -> str:
    header = {"format": CACHE_FORMAT, "key": key, "sha256": sha256(text), "versions": versions()}
    return _HEADER + json.dumps(header, sort_keys=True) + "\n" + text


def verified_entry(key: str, data: bytes) -> str:
    """The module text of cache entry `data` stored under `key`; ValueError saying what is wrong
    when it is not exactly what fastc wrote for that key."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    first, newline, module = text.partition("\n")
    if not first.startswith(_HEADER) or not newline:
        raise ValueError("no fastc header" if text else "empty")
    try:
        header = json.loads(first[len(_HEADER):])
    except ValueError:
        raise ValueError("unreadable header") from None
    if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT:
        raise ValueError("another format")
    if header.get("key") != key:
        raise ValueError("written for another key (a swapped or copied file)")
    if header.get("versions") != versions():
        raise ValueError("written by other versions")
    if header.get("sha256") != sha256(module):
        raise ValueError("content does not match its checksum (edited or truncated)")
    return module


def load(key: str) -> str | None:
    """The verified lowered module cached for `key`, or None (absent, disabled, or damaged:
    then the caller rebuilds it and `store` rewrites the entry)."""
    path = entry_path(key)
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        STATS["cpu_disk_misses"] += 1
        return None
    except OSError as e:
        log.warning("fastc: cannot read cache entry %s (%s); rebuilding it", path, e)
        STATS["cpu_disk_misses"] += 1
        return None
    try:
        text = verified_entry(key, data)
    except ValueError as e:
        STATS["cpu_disk_corrupt"] += 1
        log.warning("fastc: rebuilding damaged cache entry %s: %s", path, e)
        return None
    STATS["cpu_disk_hits"] += 1
    return text


def store(key: str, text: str) -> None:
    path = entry_path(key)
    if path is None:
        return
    try:
        _atomic_write(path, entry_text(key, text))
    except OSError as e:  # a read-only or full cache directory only costs the next process a rebuild
        log.debug("fastc: cannot write cache entry %s (%s)", path, e)
