"""fastc: a torch.compile backend.

    model = torch.compile(model, backend="fastc", options={"debug_dir": "dump"})

`fastc.reports()` lists what fastc did to each graph compiled in this process.
"""
from __future__ import annotations

from .backend import fastc_backend
from .options import Options, make_options

__version__ = "0.1.0"

# No NullHandler on the "fastc" logger: without logging configured, Python's last-resort handler
# prints its warnings (a graph that runs eagerly, a kernel that runs as ATen) to stderr, so a
# fallback is never silent; configured logging (or TORCH_LOGS=+fastc) takes them as usual.


def reports():
    """What fastc did to each graph it compiled in this process, oldest first."""
    from .report import REPORTS
    return list(REPORTS)


def _register_torch_logs():
    # TORCH_LOGS=+fastc: torch's logging settings reach the "fastc" logger (see capture.py for
    # the handlers, set up on the first compilation once torch is fully imported).
    try:
        from torch._logging import _internal
        if "fastc" not in _internal.log_registry.log_alias_to_log_qnames:
            _internal.register_log("fastc", "fastc")
    except Exception:  # private API: logging still works through the logging module
        pass


_register_torch_logs()

__all__ = ["Options", "fastc_backend", "make_options", "reports"]
