"""`torch.ops.fastc.linear_2to4`: a linear layer whose weight is 2:4 semi-structured sparse (of
every 4 consecutive inputs of an output row, at most 2 weights are nonzero), so that on CUDA it can
run on the sparse tensor cores through torch's semi-structured sparse tensors
(torch.sparse.to_sparse_semi_structured: cuSPARSELt, else CUTLASS; compute capability 8.0+).

    fastc::linear_2to4(Tensor x, Tensor weight, Tensor? bias) -> Tensor

x (..., in) -> (..., out) = F.linear(x, weight, bias), `weight` the dense (out, in) weight with the
2:4 zeros in it (what the graph holds, and what every implementation computes with).

* Fake (meta) implementation: the output shape only, symbolic batch sizes included.
* CPU: F.linear(x, weight, bias), the reference (CPU has no 2:4 kernel: this is a dense product).
* CUDA: F.linear with the weight compressed by torch's semi-structured sparse tensors, once per
  weight tensor (cached while the tensor lives and is not changed in place: a weak reference to it
  and its version counter); where the weight cannot use the kernel (`kernel_refusal`, or not 2:4
  sparse) or the conversion or the sparse product raises, one warning per reason in the "fastc"
  logger and the dense product for that weight (the same values, up to rounding).

`two_four_mask(scores)` picks which 2 of every 4 weights stay; `kernel_refusal(weight)` says why a
weight cannot use the sparse kernel (None when it can). Importing this module registers the op
once; importing it again (or reloading) does not.
"""
from __future__ import annotations

import logging
import threading
import weakref
from typing import Optional

import torch
import torch.nn.functional as F

from .custom_ops import registered

log = logging.getLogger("fastc")

#: Compute capability the 2:4 sparse tensor cores need (Ampere).
MIN_CAPABILITY = (8, 0)

_WARNED: set = set()
_LOCK = threading.RLock()  # re-entrant: a weak reference callback may run while it is held
#: id(weight) -> (weak reference to it, its _version then, the compressed weight or None: dense).
_CACHE: dict[int, tuple] = {}


# -- which weights stay ------------------------------------------------------------------------
def two_four_mask(scores: torch.Tensor) -> torch.Tensor:
    """The bool mask (out, in) that keeps, in every row, the 2 highest-scored of each 4
    consecutive columns (0-3, 4-7, ...); ties go to the lower column. `in` must be a multiple of 4."""
    if scores.dim() != 2 or scores.shape[1] % 4:
        raise ValueError(f"two_four_mask: scores of shape {tuple(scores.shape)}: expected (out, in) "
                         "with in a multiple of 4")
    out, cols = scores.shape
    groups = scores.reshape(out, cols // 4, 4)
    # Stable descending sort: equal scores keep their order, so the lower column comes first.
    order = torch.sort(groups, dim=-1, descending=True, stable=True).indices
    mask = torch.zeros(groups.shape, dtype=torch.bool, device=scores.device)
    mask.scatter_(-1, order[..., :2], True)
    return mask.reshape(out, cols)


def is_two_four(weight: torch.Tensor) -> bool:
    """Whether every 4 consecutive entries of each row of `weight` (out, in) hold at most 2 nonzeros."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    nonzero = (weight != 0).reshape(weight.shape[0], -1, 4).sum(-1)
    return bool((nonzero <= 2).all())


# -- where the kernel exists -------------------------------------------------------------------
def sparse_backend() -> type:
    """The semi-structured sparse tensor class torch would compress with: cuSPARSELt's, else
    (forced, or cuSPARSELt missing from this build) CUTLASS's."""
    from torch.sparse import (SparseSemiStructuredTensor, SparseSemiStructuredTensorCUSPARSELT,
                              SparseSemiStructuredTensorCUTLASS)
    if SparseSemiStructuredTensor._FORCE_CUTLASS or not torch.backends.cusparselt.is_available():
        return SparseSemiStructuredTensorCUTLASS
    return SparseSemiStructuredTensorCUSPARSELT


def device_refusal(device: torch.device) -> str | None:
    """Why weights on `device` cannot use a 2:4 sparse kernel, or None."""
    device = torch.device(device)
    if device.type != "cuda":
        return (f"weights on {device.type}: 2:4 semi-structured sparsity needs a kernel for it, which "
                "exists only on CUDA (torch's semi-structured sparse tensors, compute capability 8.0+); "
                f"on {device.type} a 2:4-masked weight would run as a dense product, no faster, so the "
                "pass is refused (use prune-channels for speed on CPU)")
    capability = torch.cuda.get_device_capability(device)
    if tuple(capability) < MIN_CAPABILITY:
        return (f"CUDA device {device} has compute capability {capability[0]}.{capability[1]}: 2:4 sparse "
                "tensor cores need 8.0 or newer (Ampere)")
    return None


def layout_refusal(shape, dtype: torch.dtype, backend: type | None = None) -> str | None:
    """Why a weight of this shape (out, in) and dtype cannot use `backend`'s 2:4 kernel (by default
    sparse_backend()), or None."""
    backend = sparse_backend() if backend is None else backend
    name = backend.BACKEND
    constraints = backend._DTYPE_SHAPE_CONSTRAINTS
    if len(shape) != 2:
        return f"a {len(shape)}-D weight: {name}'s 2:4 kernels take 2-D weights"
    if dtype not in constraints:
        supported = ", ".join(str(d).replace("torch.", "") for d in constraints)
        return f"{str(dtype).replace('torch.', '')} weights: {name}'s 2:4 kernels take {supported}"
    rows, cols = constraints[dtype].sparse_min_rows, constraints[dtype].sparse_min_cols
    out, inputs = shape
    if out < rows or out % rows or inputs < cols or inputs % cols:
        return (f"a {out} x {inputs} weight: {name}'s 2:4 kernels for {str(dtype).replace('torch.', '')} "
                f"need outputs a multiple of {rows} and inputs a multiple of {cols}")
    return None


def kernel_refusal(weight: torch.Tensor) -> str | None:
    """Why `weight` (out, in) cannot use the 2:4 sparse kernel (not on CUDA, a device older than
    compute capability 8.0, a dtype or shape the kernel does not take), or None when it can."""
    return device_refusal(weight.device) or layout_refusal(tuple(weight.shape), weight.dtype)


# -- the CUDA implementation -------------------------------------------------------------------
def _warn_once(reason: str) -> None:
    with _LOCK:
        if reason in _WARNED:
            return
        _WARNED.add(reason)
    log.warning("fastc: linear_2to4: %s; running the dense product for this weight", reason)


def _compress(weight: torch.Tensor):
    """The semi-structured sparse form of `weight`, or None (with a warning) when it has none."""
    reason = kernel_refusal(weight)
    if reason is None and not is_two_four(weight):
        reason = f"a {weight.shape[0]} x {weight.shape[1]} weight that is not 2:4 sparse"
    if reason is None:
        try:
            return sparse_backend().from_dense(weight.detach().contiguous())
        except Exception as e:  # noqa: BLE001 - any failure: the dense product, with the reason
            reason = f"compressing a {weight.shape[0]} x {weight.shape[1]} weight failed: {type(e).__name__}: {e}"
    _warn_once(reason)
    return None


def sparse_weight(weight: torch.Tensor):
    """The compressed form of `weight` the CUDA implementation uses (None: it runs dense), made
    once per tensor: a weight changed in place (another _version) or another tensor at the same
    address gets its own."""
    key = id(weight)
    with _LOCK:
        entry = _CACHE.get(key)
    if entry is not None and entry[0]() is weight and entry[1] == weight._version:
        return entry[2]
    compressed = _compress(weight)

    def forget(ref, key=key):
        with _LOCK:
            if _CACHE.get(key, (None,))[0] is ref:
                del _CACHE[key]
    with _LOCK:
        _CACHE[key] = (weakref.ref(weight, forget), weight._version, compressed)
    return compressed


def _mark_dense(weight: torch.Tensor) -> None:
    with _LOCK:
        entry = _CACHE.get(id(weight))
        if entry is not None and entry[0]() is weight:
            _CACHE[id(weight)] = (entry[0], entry[1], None)


def linear_2to4_cuda(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """The op's CUDA implementation: the sparse product where the weight has a compressed form,
    else (or when that raises, with one warning per reason) the dense one."""
    compressed = sparse_weight(weight)
    if compressed is not None:
        try:
            rows = x.reshape(-1, x.shape[-1])
            y = F.linear(rows, compressed, bias)
            return y.reshape(*x.shape[:-1], weight.shape[0]).contiguous()
        except Exception as e:  # noqa: BLE001 - the dense product gives the same values
            _warn_once(f"the sparse product of x {tuple(x.shape)} {x.dtype} and a {weight.shape[0]} x "
                       f"{weight.shape[1]} weight failed: {type(e).__name__}: {e}")
            _mark_dense(weight)
    return F.linear(x, weight, bias)


# -- registration ------------------------------------------------------------------------------
def _register() -> None:
    if registered("linear_2to4"):
        return

    @torch.library.custom_op("fastc::linear_2to4", mutates_args=())
    def linear_2to4(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError(f"fastc::linear_2to4 has no kernel for device {x.device}")

    @linear_2to4.register_fake
    def _fake(x, weight, bias):
        torch._check(x.shape[-1] == weight.shape[1],
                     lambda: f"fastc::linear_2to4: x has {x.shape[-1]} features, the weight {weight.shape[1]}")
        return x.new_empty((*x.shape[:-1], weight.shape[0]))

    @linear_2to4.register_kernel("cpu")
    def _cpu(x, weight, bias):
        return F.linear(x, weight, bias)

    @linear_2to4.register_kernel("cuda")
    def _cuda(x, weight, bias):
        return linear_2to4_cuda(x, weight, bias)


_register()
