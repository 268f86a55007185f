"""Native CPU BCQ linear: MLIR (cpu_native_ir.py) JIT-compiled by LLVM through torch-mlir's
ExecutionEngine (opt level 3, host CPU), threads by OpenMP when a runtime is found.

    y = native_linear(x, bits, scales, bias, group_size, in_features)    # x fp32 (M, in)

One compiled function per (bits, in, out, group size, scale dtype, bias or not, threads), kept
for the life of the process. fp16 scales are read as they are (converted to fp32 in registers),
so the packed weight is never copied, except when `out` is not a multiple of the vector width:
then bits and scales are zero-padded once per weight (cached while the weight tensor lives).

Anything that keeps the kernel from being built (no torch_mlir, a shape it does not handle, an
MLIR or LLVM error) raises NativeUnavailable with the reason; callers fall back to PyTorch.

Stand-alone: only torch, torch_mlir and this package (see tests/layering). torch_mlir is
imported on the first build, never at import time.
"""
from __future__ import annotations

import ctypes
import logging
import threading
import weakref

import torch

from ..openmp import openmp_library
from . import cpu_native_ir
from .cpu_native_ir import Unsupported, padded_out

log = logging.getLogger("fastc")

VECTOR_WIDTH = 16   # output rows per vector (one AVX-512 register, two AVX2 ones)
ROW_BLOCK = 4       # rows of x sharing one pass over a block of weights (register block)
# 1-2 rows: 32 outputs per block (two AVX-512 registers per accumulator), 2 rows at a time.
# Measured on the 2-core AMD EPYC (AVX-512) of docs/benchmarks/bcq-cpu.md, one thread, 3 bits,
# 2048 x 2048: 1 row 0.27 ms (vl 32) vs 0.42 ms (vl 16); 2 rows 0.41 vs 0.48; 3 rows 0.66 vs 0.57
# ms (vl 16, 4 rows); 4 rows 0.68 (16, 4) vs 0.79 (32, 2) vs 1.46 ms (32, 4: registers spill).
FEW_ROWS, FEW_ROWS_BLOCK = 2, (32, 2)


def block_shape(rows: int) -> tuple[int, int]:
    """(vector width, row block) used for `rows` rows of x."""
    return FEW_ROWS_BLOCK if rows <= FEW_ROWS else (VECTOR_WIDTH, ROW_BLOCK)
OPT_LEVEL = 3


class NativeUnavailable(RuntimeError):
    """The native BCQ kernel cannot run here or for this shape; the message says why."""


_LOCK = threading.RLock()
_KERNELS: dict = {}      # specialisation key -> _Kernel, or the NativeUnavailable it raised
_PADDED: dict = {}       # (id(bits), id(scales), vl) -> (weakref(bits), weakref(scales), bits, scales)


def lowering_pipeline(threads: int) -> str:
    steps = []
    if threads > 1:
        steps += [f"convert-scf-to-openmp{{num-threads={threads}}}", "canonicalize"]
    steps += ["lower-affine", "convert-scf-to-cf", "convert-vector-to-llvm", "expand-strided-metadata",
              "finalize-memref-to-llvm", "convert-arith-to-llvm", "convert-index-to-llvm",
              "convert-cf-to-llvm", "convert-func-to-llvm"]
    if threads > 1:
        steps.append("convert-openmp-to-llvm")
    steps.append("reconcile-unrealized-casts")
    return "builtin.module(" + ", ".join(steps) + ")"


class _Kernel:
    """A compiled specialisation and its packed entry point (one array of argument pointers)."""

    def __init__(self, key, text: str, threads: int, libs: list[str], entry: str, ranks: list[int]):
        try:
            from torch_mlir import ir, passmanager
            from torch_mlir.execution_engine import ExecutionEngine
        except ImportError as e:
            raise NativeUnavailable(f"torch_mlir with its ExecutionEngine is not installed ({e})") from e
        self.key = key
        context = ir.Context()
        try:
            with context:
                module = ir.Module.parse(text)
                passmanager.PassManager.parse(lowering_pipeline(threads)).run(module.operation)
                self.engine = ExecutionEngine(module, opt_level=OPT_LEVEL, shared_libs=libs)
        except Exception as e:  # noqa: BLE001 - MLIR/LLVM's own words become the reason
            raise NativeUnavailable(f"building the native BCQ kernel failed: {type(e).__name__}: "
                                    f"{str(e).strip()[:1000]}") from e
        self.context = context
        address = self.engine.raw_lookup("_mlir_ciface_" + entry)
        if not address:
            raise NativeUnavailable(f"the compiled BCQ module has no entry point {entry}")
        self.fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(address)
        self.ranks = ranks
        self._local = threading.local()

    def call(self, tensors: list[torch.Tensor]) -> None:
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            offsets, total = [], 0
            for r in self.ranks:
                offsets.append(total)
                total += 3 + 2 * r
            flat = (ctypes.c_int64 * total)()
            base = ctypes.addressof(flat)
            descriptors = (ctypes.c_void_p * len(self.ranks))(*[base + 8 * o for o in offsets])
            args = (ctypes.c_void_p * len(self.ranks))(
                *[ctypes.addressof(descriptors) + 8 * i for i in range(len(self.ranks))])
            buffers = self._local.buffers = (flat, args, descriptors)
        values = []
        for t in tensors:
            p = t.data_ptr()
            values += (p, p, 0, *t.shape, *t.stride())
        buffers[0][:] = values
        self.fn(buffers[1])


def _threads() -> int:
    threads = max(1, torch.get_num_threads())
    if threads > 1 and openmp_library() is None:
        return 1
    return threads


def kernel_for(bits: int, in_features: int, out_features: int, group_size: int, scale_dtype: torch.dtype,
               has_bias: bool, vl: int = VECTOR_WIDTH, rows: int = ROW_BLOCK) -> _Kernel:
    """The compiled kernel for one specialisation (out_features already a multiple of vl)."""
    if scale_dtype not in (torch.float16, torch.float32):
        raise NativeUnavailable(f"native BCQ kernel: scales must be fp16 or fp32, got {scale_dtype}")
    threads = _threads()
    key = (bits, in_features, out_features, group_size, scale_dtype, bool(has_bias), vl, rows, threads)
    return _cached(key, threads, "bcq_linear", [2, 3, 3] + ([1] if has_bias else []) + [2],
                   lambda: cpu_native_ir.module_text(bits, in_features, out_features, group_size,
                                                     _scale_type(scale_dtype), has_bias, vl=vl, rows=rows))


def _scale_type(scale_dtype: torch.dtype) -> str:
    return "f16" if scale_dtype == torch.float16 else "f32"


def _cached(key, threads: int, entry: str, ranks: list[int], text) -> _Kernel:
    """The kernel built from `text()` for `key`, built once per process (a failure to build is
    remembered too, and raised as NativeUnavailable each time)."""
    with _LOCK:
        found = _KERNELS.get(key)
        if found is None:
            try:
                libs = [openmp_library()] if threads > 1 else []
                found = _Kernel(key, text(), threads, libs, entry, ranks)
            except Unsupported as e:
                found = NativeUnavailable(str(e))
            except NativeUnavailable as e:
                found = e
            _KERNELS[key] = found
    if isinstance(found, NativeUnavailable):
        raise found
    return found


def check_supported(bits: int, in_features: int, group_size: int) -> None:
    """NativeUnavailable when the kernel does not handle this shape (no build needed to tell)."""
    try:
        cpu_native_ir.check_shape(bits, in_features, VECTOR_WIDTH, group_size, VECTOR_WIDTH)
    except Unsupported as e:
        raise NativeUnavailable(str(e)) from e


def _padded(bits: torch.Tensor, scales: torch.Tensor, vl: int):
    """bits and scales with the output dimension zero-padded to a multiple of vl (cached while
    both tensors live)."""
    out = bits.shape[2]
    if out % vl == 0 and bits.is_contiguous() and scales.is_contiguous():
        return bits, scales
    key = (id(bits), id(scales), vl)
    with _LOCK:
        entry = _PADDED.get(key)
        if entry is not None and entry[0]() is bits and entry[1]() is scales:
            return entry[2], entry[3]
        width = padded_out(out, vl)
        pb = bits.new_zeros(bits.shape[0], bits.shape[1], width)
        pb[:, :, :out] = bits
        ps = scales.new_zeros(scales.shape[0], scales.shape[1], width)
        ps[:, :, :out] = scales

        def forget(_ref, key=key):
            _PADDED.pop(key, None)
        _PADDED[key] = (weakref.ref(bits, forget), weakref.ref(scales, forget), pb, ps)
        return pb, ps


def native_linear(x: torch.Tensor, bits: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None,
                  group_size: int, in_features: int, vl: int | None = None,
                  rows: int | None = None) -> torch.Tensor:
    """y (M, out) fp32 = x (M, in) fp32 @ W^T + bias for packed BCQ `bits` (int32 (bits, words, out))
    and `scales` ((bits, in/group_size, out), fp16 or fp32). Raises NativeUnavailable.
    vl / rows: vector width and row block (defaults VECTOR_WIDTH, ROW_BLOCK), for tuning."""
    if x.device.type != "cpu" or bits.device.type != "cpu":
        raise NativeUnavailable("the native BCQ kernel runs on CPU tensors only")
    if x.dtype != torch.float32:
        raise NativeUnavailable(f"the native BCQ kernel takes fp32 x, got {x.dtype}")
    if x.dim() != 2 or x.shape[1] != in_features:
        raise NativeUnavailable(f"native BCQ kernel: x must be (M, {in_features}), got {tuple(x.shape)}")
    nbits, words, out = bits.shape
    if bits.dtype != torch.int32 or words != -(-in_features // 32):
        raise NativeUnavailable(f"native BCQ kernel: bits must be int32 (bits, {-(-in_features // 32)}, out), "
                                f"got {bits.dtype} {tuple(bits.shape)}")
    if tuple(scales.shape) != (nbits, in_features // group_size, out):
        raise NativeUnavailable(f"native BCQ kernel: scales must be ({nbits}, {in_features // group_size}, "
                                f"{out}), got {tuple(scales.shape)}")
    if vl is None and rows is None:
        vl, rows = block_shape(x.shape[0])
    vl, rows = vl or VECTOR_WIDTH, rows or ROW_BLOCK
    width = padded_out(out, vl)
    kernel = kernel_for(nbits, in_features, width, group_size, scales.dtype, bias is not None,
                        vl=vl, rows=rows)
    pbits, pscales = _padded(bits, scales, vl)
    x = x.contiguous()
    y = torch.empty(x.shape[0], width, dtype=torch.float32)
    args = [x, pbits, pscales]
    if bias is not None:
        b = bias.to(torch.float32).contiguous()
        if width != out:
            b = torch.nn.functional.pad(b, (0, width - out))
        args.append(b)
    args.append(y)
    if x.shape[0]:
        kernel.call(args)
    return y if width == out else y[:, :out].contiguous()


def dequantize_kernel_for(bits: int, in_features: int, out_features: int, group_size: int,
                          scale_dtype: torch.dtype, vl: int = VECTOR_WIDTH) -> _Kernel:
    """The compiled W^T builder for one specialisation (out_features a multiple of vl)."""
    if scale_dtype not in (torch.float16, torch.float32):
        raise NativeUnavailable(f"native BCQ dequantize: scales must be fp16 or fp32, got {scale_dtype}")
    threads = _threads()
    key = ("dequant", bits, in_features, out_features, group_size, scale_dtype, vl, threads)
    return _cached(key, threads, "bcq_dequant_t", [3, 3, 2],
                   lambda: cpu_native_ir.dequant_module_text(bits, in_features, out_features, group_size,
                                                             _scale_type(scale_dtype), vl=vl))


def native_dequantize_t(bits: torch.Tensor, scales: torch.Tensor, group_size: int,
                        in_features: int) -> torch.Tensor:
    """The dense fp32 weight transposed, (in, out), built by a native kernel (a fresh tensor on
    every call). Raises NativeUnavailable."""
    if bits.device.type != "cpu" or bits.dtype != torch.int32 or bits.dim() != 3:
        raise NativeUnavailable("native BCQ dequantize: bits must be an int32 (bits, words, out) CPU tensor")
    nbits, words, out = bits.shape
    if words != -(-in_features // 32) or tuple(scales.shape) != (nbits, in_features // group_size, out):
        raise NativeUnavailable(f"native BCQ dequantize: shapes {tuple(bits.shape)}, {tuple(scales.shape)} "
                                f"do not match in_features={in_features}, group_size={group_size}")
    vl = VECTOR_WIDTH
    width = padded_out(out, vl)
    kernel = dequantize_kernel_for(nbits, in_features, width, group_size, scales.dtype, vl)
    pbits, pscales = _padded(bits, scales, vl)
    wt = torch.empty(in_features, width, dtype=torch.float32)
    kernel.call([pbits, pscales, wt])
    return wt if width == out else wt[:, :out]
