"""The OpenMP runtime the hand-written BCQ kernels (kernels/bcq) link against: their parallel
loops go through MLIR's OpenMP lowering, which calls the LLVM/Intel ABI (`__kmpc_*`) that torch's
libgomp lacks, so this loads libiomp5 (or LLVM's libomp) next to it, only when a BCQ kernel is
built on more than one thread.

fastc's native CPU target (codegen/cpu) does not use it: its kernels run their threads on torch's
own libgomp pool (codegen/cpu/gomp.py).
"""
from __future__ import annotations

import ctypes
import glob
import logging
import os
import sys
import threading

log = logging.getLogger("fastc")

_LOCK = threading.Lock()
_FOUND: list = []


def openmp_library() -> str | None:
    """Path of an OpenMP runtime (libiomp5 from the `intel-openmp` package, or LLVM's libomp),
    loaded globally once per process, or None: then native kernels run on one thread.
    FASTC_OPENMP_LIB names one explicitly; FASTC_OPENMP_LIB="" turns threads off."""
    with _LOCK:
        if _FOUND:
            return _FOUND[0]
        path = os.environ.get("FASTC_OPENMP_LIB")
        if path is None:
            roots = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(sys.executable)), "/usr"}
            found = [p for r in sorted(roots) for name in ("libiomp5.so", "libomp.so", "libomp.so.5")
                     for p in glob.glob(os.path.join(r, "lib*", name)) + glob.glob(os.path.join(r, "lib", "*", name))]
            path = found[0] if found else ""
            if not path:
                log.info("fastc: no OpenMP runtime found (pip install intel-openmp); native kernels run on one thread")
        if path:
            # Idle OpenMP threads of this runtime would spin against ATen's own thread pool.
            os.environ.setdefault("KMP_BLOCKTIME", "0")
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError as e:
                log.warning("fastc: cannot load OpenMP runtime %s (%s); native kernels run on one thread", path, e)
                path = ""
        _FOUND.append(path or None)
        return _FOUND[0]
