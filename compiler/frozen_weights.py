"""Frozen weights are checked at every call, so a graph never runs with another module's weights.

Freezing turns module state into constants of the compiled graph. Dynamo only guards on the
identity of parameters when Inductor's own freezing is on, so the same compiled graph is called
for a second instance of the same class (a base and a fine-tuned model, an ensemble), for one
compiled function applied to several modules, and after a parameter is replaced or changed in
place. `FrozenWeights.match` compares each frozen input of a call with the tensor that was
frozen: the same object, the same version counter (in-place changes bump it) and the same data
pointer (`p.data = t` changes it). A call that does not match runs a variant of the graph compiled
without frozen weights, which takes the weights as inputs like eager does.
"""
from __future__ import annotations

import threading

import torch


class FrozenWeights:
    def __init__(self, positions: list[int], tensors: list[torch.Tensor]):
        self.positions = list(positions)
        self.tensors = list(tensors)
        self.state = [(t._version, t.data_ptr()) for t in self.tensors]

    def match(self, args: list) -> bool:
        """Whether the frozen inputs of `args` are the very tensors frozen, unchanged."""
        for i, frozen, (version, pointer) in zip(self.positions, self.tensors, self.state):
            a = args[i]
            if a is not frozen or a._version != version or a.data_ptr() != pointer:
                return False
        return True

    def describe_mismatch(self, args: list) -> str:
        for i, frozen, (version, pointer) in zip(self.positions, self.tensors, self.state):
            a = args[i]
            if a is not frozen:
                return f"input {i} is another tensor than the one frozen (another module instance or a replaced parameter)"
            if a._version != version:
                return f"input {i} was changed in place since it was frozen"
            if a.data_ptr() != pointer:
                return f"input {i} has new data since it was frozen (.data assigned)"
        return "weights unchanged"


class Variant:
    """A callable built on first use, once, even when several threads ask at the same time."""

    def __init__(self, build):
        self._build, self._value, self._lock = build, None, threading.Lock()

    def get(self):
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
        return self._value
