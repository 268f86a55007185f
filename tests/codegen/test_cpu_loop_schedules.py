"""Native CPU loop schedules (codegen/cpu/tiling.py): every schedule of the space computes what
ATen computes, on kernels of every shape the zoo makes (row reductions, softmax, layer norm,
flat pointwise, broadcasts, strided inputs, several outputs); a schedule that does not apply to a
kernel fails its build and is no candidate, never a wrong answer."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastc.costmodel import ATEN, HeuristicChoices
from fastc.codegen.schedule import CPU_LOOPS, cpu_schedules
from fastc.ir.schedule import Schedule


class EveryCandidate(HeuristicChoices):
    """Runs every candidate at a kernel's first call and compares it with ATen's values."""

    def __init__(self):
        super().__init__()
        self.checked, self.illegal = [], []

    def choose(self, k, candidates, run=None, records=None):
        if k.kind == "library":
            return super().choose(k, candidates, run, records)
        if run is None:
            return None  # at the first call
        expected = run(ATEN)
        for c in candidates:
            if c == ATEN:
                continue
            try:
                got = run(c)
            except Exception as e:  # noqa: BLE001 - not legal for this kernel: counted
                assert c.loops, f"{k.name}: the plain schedule {c} failed: {e}"
                self.illegal.append((k.name, c))
                continue
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=lambda m: f"{k.name} {c}: {m}")
            self.checked.append((k.name, c))
        return self.checked[-1][1]


def layer_norm_softmax(x, w, b):
    return torch.softmax(F.layer_norm(x, (x.shape[-1],), w, b) * 2, dim=-1) + torch.relu(x)


def rms_norm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


def gelu_bias(x, b):
    return F.gelu(x + b)


def channel_mean(x):
    return x.mean(dim=(2, 3)) * 3 + x.amax(dim=(2, 3))


def transposed_add(x, y):
    return torch.tanh(x.transpose(1, 2) + y).exp()


def two_outputs(x):
    m = x.sum(-1, keepdim=True)
    return x - m, m * 2


def causal_softmax(scores):
    t = scores.shape[-1]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    return (scores / 8.0).masked_fill(~causal, float("-inf")).softmax(-1)


# Kernels whose vectorizing schedules build (the others: bool tensors, x ** 3).
VECTORIZED = {"one_row_layer_norm", "layer_norm_softmax", "gelu_bias", "channel_mean", "transposed_add", "two_outputs", "flat_pointwise"}

CASES = [
    ("causal_softmax", causal_softmax, lambda: (torch.randn(2, 4, 32, 32),)),
    ("layer_norm_softmax", layer_norm_softmax, lambda: (torch.randn(4, 16, 64), torch.randn(64), torch.randn(64))),
    ("rms_norm", rms_norm, lambda: (torch.randn(2, 8, 96), torch.randn(96))),
    ("gelu_bias", gelu_bias, lambda: (torch.randn(8, 130), torch.randn(130))),
    ("channel_mean", channel_mean, lambda: (torch.randn(2, 12, 7, 5),)),
    ("transposed_add", transposed_add, lambda: (torch.randn(3, 20, 6), torch.randn(3, 6, 20))),
    ("two_outputs", two_outputs, lambda: (torch.randn(5, 33),)),
    ("flat_pointwise", lambda x: torch.sigmoid(x) * x, lambda: (torch.randn(4097),)),
    # One row: vectorizing it once grew the IR until the process ran out of memory.
    ("one_row_layer_norm", lambda x, w, b: F.layer_norm(x, (32,), w, b),
     lambda: (torch.randn(1, 32), torch.randn(32), torch.randn(32))),
]


@pytest.mark.parametrize("name,fn,make", CASES, ids=[c[0] for c in CASES])
def test_every_loop_schedule_computes_what_aten_computes(name, fn, make):
    torch.manual_seed(0)
    args = make()
    chooser = EveryCandidate()
    compiled = torch.compile(fn, backend="fastc", options={"target": "cpu", "mode": "max-autotune",
                                                            "choices": chooser})
    torch.testing.assert_close(compiled(*args), fn(*args), rtol=1e-5, atol=1e-5)
    loops = [c for _, c in chooser.checked if c.loops]
    # Most of the space applies to every kernel; what does not is refused at build, not run wrong.
    assert len(loops) >= len(CPU_LOOPS) // 2, (chooser.checked, chooser.illegal)
    if name in VECTORIZED:
        assert any(c.vectorize for c in loops), chooser.illegal


@pytest.mark.parametrize("name", ["convnext", "gpt2", "mobilenet_v2"])
def test_every_loop_schedule_of_zoo_models_computes_what_aten_computes(name):
    from fastc_eval import zoo
    torch._dynamo.reset()
    model, inputs = zoo.build(name, batch=2)
    model.eval()
    chooser = EveryCandidate()
    compiled = torch.compile(model, backend="fastc", options={"target": "cpu", "mode": "max-autotune",
                                                               "choices": chooser})
    with torch.no_grad():
        torch.testing.assert_close(zoo.main_output(compiled(**inputs)), zoo.main_output(model(**inputs)),
                                   rtol=1e-4, atol=1e-4)
    assert any(c.loops for _, c in chooser.checked)


def test_the_space_offers_threads_only_to_big_kernels():
    small, big = cpu_schedules({"xnumel": 100}), cpu_schedules({"xnumel": 1 << 20})
    assert not any(s.parallel and s.loops for s in small)
    assert sum(s.parallel for s in big) == len(CPU_LOOPS) + 1
    assert all(isinstance(s, Schedule) and s.XBLOCK == 0 for s in big)
    assert len(set(big)) == len(big)


def test_vectorizing_schedules_tile_every_loop():
    # An untiled loop would vectorize to vectors as big as the tensor.
    assert all(outer and inner for outer, inner, vectorize, _ in CPU_LOOPS if vectorize)


class Describing(HeuristicChoices):
    """Describes every candidate of every kernel (as ModelChoices does), keeping the features."""
    ranks_every_schedule = True

    def __init__(self):
        super().__init__()
        self.described = []

    def choose(self, k, candidates, run=None, records=None):
        if k.kind == "library":
            return super().choose(k, candidates, run, records)
        if run is None:
            return None  # described at the first call, as ModelChoices does
        if k.describe is not None:
            for c in candidates:
                try:
                    self.described.append((k.name, str(c), k.describe(c)))
                except Exception as e:  # noqa: BLE001 - a schedule that does not apply: kept as such
                    self.described.append((k.name, str(c), type(e).__name__))
        return ATEN


def test_describing_in_a_reused_context_gives_what_a_fresh_context_gives(monkeypatch):
    from fastc.codegen.cpu import candidate_mlir
    x, w, b = torch.randn(4, 6, 32), torch.randn(32), torch.randn(32)
    runs = []
    for uses in (1, candidate_mlir.CONTEXT_USES):  # a new context for every description, then one for all
        monkeypatch.setattr(candidate_mlir, "CONTEXT_USES", uses)
        torch._dynamo.reset()
        chooser = Describing()
        compiled = torch.compile(layer_norm_softmax, backend="fastc",
                                 options={"target": "cpu", "choices": chooser, "mode": "max-autotune"})
        torch.testing.assert_close(compiled(x, w, b), layer_norm_softmax(x, w, b))
        runs.append(chooser.described)
    assert len(runs[0]) >= 12 and sum(isinstance(f, dict) for _, _, f in runs[0]) >= 12
    assert runs[0] == runs[1]
