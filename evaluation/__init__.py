"""fastc_eval: the models fastc is tested, demonstrated, benchmarked and measured on.

    from fastc_eval import zoo, measure
    model, inputs = zoo.build("gpt2")                          # any zoo model: model(**inputs)
    model = zoo.load("digits-cnn")                             # a reference model, trained here
    print(measure("digits-cnn", "prune-magnitude{fraction=0.2}").text())

- zoo.py: every model by name (demo, test and reference models), one namespace.
- accuracy.py: the accuracy harness; measures a pass pipeline through fastc's pass manager on a
  frozen graph of the model (frozen_graph.py). `fastc accuracy` is cli.py.
- models/, data/, weights/: the modules, the data loaders (scikit-learn's digits, the stdlib's
  sources) and the trained weights (safetensors + JSON; nothing is unpickled).
- train.py, training.py, metrics.py, weights_io.py: how the weights were made and are read
  (`python -m fastc_eval.train NAME`).

This package sits above the compiler: it uses fastc, and fastc's command line reads its models.
See docs/reference-models.md.
"""
from __future__ import annotations

_LAZY = {"measure": ("accuracy", "measure"), "Report": ("accuracy", "Report"), "load": ("zoo", "load"),
         "build": ("zoo", "build")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastc_eval' has no attribute {name!r}")


__all__ = ["Report", "build", "load", "measure"]
