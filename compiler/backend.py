"""The torch.compile backend: `torch.compile(model, backend="fastc", options={...})`.

Registered under the `torch_dynamo_backends` entry point, so no `import fastc` is needed. The
compiler itself (capture, passes, code generation) is imported on the first compilation.
"""
from __future__ import annotations

from .options import make_options


def fastc_backend(gm, example_inputs, *, mode: str | None = None, options: dict | None = None):
    """Compiles one Dynamo graph. Options are validated before anything else happens."""
    opts = make_options(options, mode)
    from .capture import compile_graph
    return compile_graph(gm, example_inputs, opts)


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
