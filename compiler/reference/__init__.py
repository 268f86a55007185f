"""Reference models with trained weights, and a harness that measures what a rewrite costs.

    from fastc.reference import load, measure, transforms
    model = load("digits-cnn")                      # trained, eval mode
    print(measure("digits-cnn", transforms.get("prune-20")).text())

Models and data: catalog.py; training: train.py (python -m fastc.reference.train NAME);
weights: weights/*.safetensors with a JSON sidecar each. See docs/reference-models.md.
"""
from .catalog import MODELS, get, load
from .harness import Report, measure, weight_stats

__all__ = ["MODELS", "Report", "get", "load", "measure", "weight_stats"]
