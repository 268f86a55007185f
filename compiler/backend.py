"""The torch.compile backend: `torch.compile(model, backend="fastc", options={...})`.

Registered under the `torch_dynamo_backends` entry point, so no `import fastc` is needed.
"""
from __future__ import annotations

from .capture import compile_graph
from .options import make_options


def fastc_backend(gm, example_inputs, *, mode: str | None = None, options: dict | None = None):
    """Compiles one Dynamo graph. Options are validated before anything else happens."""
    opts = make_options(options, mode)
    return compile_graph(gm, example_inputs, opts)
