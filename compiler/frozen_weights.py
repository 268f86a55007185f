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

import operator
import threading

import torch


class FrozenWeights:
    def __init__(self, positions: list[int], tensors: list[torch.Tensor]):
        self.positions = list(positions)
        self.tensors = list(tensors)
        self.state = [(t._version, t.data_ptr()) for t in self.tensors]
        self._frozen_of = picker(self.positions)   # a call's frozen inputs, as one tuple

    def match(self, args: list) -> bool:
        """Whether the frozen inputs of `args` are the very tensors frozen, unchanged (identity
        compared in one C loop, then versions and data pointers)."""
        got = self._frozen_of(args)
        if not all(map(operator.is_, got, self.tensors)):
            return False
        return [(t._version, t.data_ptr()) for t in got] == self.state

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


def picker(positions: list[int]):
    """args -> (args[i] for i in positions) as a tuple, in one C call where it can be."""
    if len(positions) > 1:
        return operator.itemgetter(*positions)
    if positions:
        i = positions[0]
        return lambda args: (args[i],)
    return lambda args: ()


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
