"""fastc: a torch.compile backend.

    model = torch.compile(model, backend="fastc", options={"debug_dir": "dump"})

`fastc.reports()` lists what fastc did to each graph compiled in this process.

Importing fastc is cheap: it loads neither torch nor the compiler. The backend (capture, passes,
code generation) loads on first use, when Dynamo calls it or `fastc.fastc_backend` is read.
"""
from __future__ import annotations

# No NullHandler on the "fastc" logger: without logging configured, Python's last-resort handler
# prints its warnings (a graph that runs eagerly, a kernel that runs as ATen) to stderr, so a
# fallback is never silent; configured logging (or TORCH_LOGS=+fastc) takes them as usual.

__version__ = "0.1.0"

_LAZY = {"fastc_backend": ("backend", "fastc_backend"), "Options": ("options", "Options"),
         "make_options": ("options", "make_options")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastc' has no attribute {name!r}")


def reports():
    """What fastc did to each graph it compiled in this process, oldest first."""
    from .report import REPORTS
    return list(REPORTS)


__all__ = ["Options", "fastc_backend", "make_options", "reports"]
