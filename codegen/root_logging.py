"""Keeps third-party code from configuring the user's root logger.

torch-mlir's FX importer calls the module-level `logging.debug()`, and with no handler on the
root logger that call runs `logging.basicConfig()`: the user's own `basicConfig` later does
nothing, and loggers that propagate (TORCH_LOGS=+fastc) print every line twice. Around such
calls the root logger gets a NullHandler when it has no handler, removed afterwards.
"""
from __future__ import annotations

import contextlib
import logging
import threading

_LOCK = threading.Lock()
_DEPTH = [0]
_GUARD = logging.NullHandler()


@contextlib.contextmanager
def root_logging_untouched():
    root = logging.getLogger()
    with _LOCK:
        if _DEPTH[0] == 0 and not root.handlers:
            root.addHandler(_GUARD)
        _DEPTH[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH[0] -= 1
            if _DEPTH[0] == 0 and _GUARD in root.handlers:
                root.removeHandler(_GUARD)
