"""Native CPU block kernels: a whole residual block (kernels/blocks.py's convfirst_block,
convnext_block, mbconv_block, mlp_block) as one generated, vectorised, tiled loop nest (block_cpu_ir.py, written with the pieces of
block_cpu_emit.py),
JIT-compiled by LLVM through torch-mlir's ExecutionEngine (opt level 3, host CPU).

    run = compile_block("convfirst_block", x.shape, (ws, bs, groups, we, be, act, act_args, wp, bp))
    out = run(x)

inverted_block (MobileNetV2's inverted block without the residual: 1x1 expansion + act1, zero
padding [left, right, top, bottom], depthwise k x k of stride 1 or 2 + act2, 1x1 projection to
Cout channels; params (we, be, act1, act1_args, wd, bd, stride, padding, act2, act2_args, wp, bp))
returns (N, Cout, Ho, Wo); its chunks are an image's bands of output rows.

convnext_block is convfirst_block's loop nest with each pixel's channels normalized in the band's
local buffer between the k x k conv and the expansion (two passes over the C rows, mean then
centred variance, vectorised along pixels).

The work is split in chunks (an image's band of rows; a tile of rows for mlp_block), each
computed start to end in L1/L2-sized local buffers; the chunks run on torch's own libgomp pool
(GOMP_parallel, at most torch.get_num_threads() threads) and each is the same machine code
whatever the thread count, so results are bitwise identical for any number of threads.

Weights are runtime arguments packed once per compile_block call (the 1x1 weights as
[M/MR, K, MR] panels); the compiled module depends only on shapes and hyperparameters, and is
kept for the life of the process, so equal blocks share it.

Stand-alone: only torch, torch_mlir and this package. torch_mlir is imported on the first build.
"""
from __future__ import annotations

import ctypes
import os
import threading
from typing import Callable

import torch

from . import block_cpu_ir as ir_
from .block_cpu_emit import Unsupported, entry_text
from .block_cpu_ir import MR

OPT_LEVEL = 3
OPS = ("convfirst_block", "convnext_block", "mbconv_block", "mlp_block", "inverted_block")


class BlockUnsupported(ValueError):
    """The reason a block kernel cannot be built for this problem."""


_LOCK = threading.RLock()
_MODULES: dict = {}     # key -> _Module or the BlockUnsupported it raised
_GOMP: list = []        # [{symbol: address}] ({} when none)

_GOMP_SYMBOLS = ("GOMP_parallel", "omp_get_thread_num", "omp_get_num_threads", "omp_get_max_threads")


def _gomp() -> dict:
    """Addresses of torch's libgomp entry points (the copy mapped in this process), {} if none."""
    with _LOCK:
        if _GOMP:
            return _GOMP[0]
        found = {}
        if torch.backends.openmp.is_available():
            try:
                with open("/proc/self/maps") as fh:
                    paths = {ln.split(None, 5)[5].strip() for ln in fh if len(ln.split(None, 5)) == 6}
            except OSError:
                paths = set()
            torch_dir = os.path.dirname(os.path.realpath(torch.__file__))
            cands = sorted((p for p in paths if os.path.basename(p).startswith("libgomp") and ".so" in p),
                           key=lambda p: (not p.startswith(torch_dir), p))
            for path in cands:
                try:
                    lib = ctypes.CDLL(path)
                    addresses = {s: ctypes.cast(getattr(lib, s), ctypes.c_void_p).value for s in _GOMP_SYMBOLS}
                except (OSError, AttributeError):
                    continue
                if all(addresses.values()):
                    found = addresses
                    break
        _GOMP.append(found)
        return found


def _pipeline() -> str:
    return ("builtin.module(convert-scf-to-cf, convert-vector-to-llvm, convert-math-to-llvm, "
            "expand-strided-metadata, finalize-memref-to-llvm, convert-arith-to-llvm, convert-index-to-llvm, "
            "convert-cf-to-llvm, convert-func-to-llvm, reconcile-unrealized-casts)")


class _Module:
    def __init__(self, plan: ir_.Plan):
        try:
            from torch_mlir import ir, passmanager
            from torch_mlir.execution_engine import ExecutionEngine
        except ImportError as e:
            raise BlockUnsupported(f"block kernel: torch_mlir with its ExecutionEngine is not installed ({e})") from e
        gomp = _gomp()
        self.chunks = plan.chunks
        self.nargs = len(plan.arg_sizes)
        context = ir.Context()
        try:
            with context:
                module = ir.Module.parse(plan.text)
                passmanager.PassManager.parse(_pipeline()).run(module.operation)
                text = str(module).rstrip()
                assert text.endswith("}")
                text = text[:-1] + entry_text(self.nargs, plan.chunks, bool(gomp)) + "}\n"
                module = ir.Module.parse(text)
                self.engine = ExecutionEngine(module, opt_level=OPT_LEVEL, shared_libs=[])
                for name, address in gomp.items():
                    self.engine.raw_register_runtime(name, ctypes.c_void_p(address))
        except Exception as e:  # noqa: BLE001 - MLIR/LLVM's own words become the reason
            raise BlockUnsupported(f"block kernel: building the native module failed: {type(e).__name__}: "
                                   f"{str(e).strip()[:1000]}") from e
        self.context = context
        address = self.engine.raw_lookup("block_entry")
        if not address:
            raise BlockUnsupported("block kernel: the compiled module has no entry point")
        self.fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(address)
        self.text = plan.text


def _module(key, make_plan) -> _Module:
    with _LOCK:
        found = _MODULES.get(key)
        if found is None:
            try:
                found = _Module(make_plan())
            except Unsupported as e:
                found = BlockUnsupported(str(e))
            except BlockUnsupported as e:
                found = e
            _MODULES[key] = found
    if isinstance(found, BlockUnsupported):
        raise found
    return found


# -- packing ------------------------------------------------------------------------------------------
def _f32(t: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise BlockUnsupported(f"block kernel: {what} must be a tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise BlockUnsupported(f"block kernel: {what} is on {t.device.type}; the CPU block kernel takes CPU tensors")
    if t.dtype != torch.float32:
        raise BlockUnsupported(f"block kernel: {what} has dtype {t.dtype}; the CPU block kernel takes float32")
    return t.detach().contiguous()


def _panels(w2d: torch.Tensor, mr: int) -> torch.Tensor:
    """[M, K] -> [ceil(M/mr), K, mr] (rows zero-padded)."""
    M, K = w2d.shape
    T = -(-M // mr)
    p = torch.zeros(T * mr, K, dtype=torch.float32)
    p[:M] = w2d
    return p.reshape(T, mr, K).permute(0, 2, 1).contiguous().reshape(-1)


def _bias(b, n: int, pad_to: int, what: str) -> torch.Tensor:
    out = torch.zeros(pad_to, dtype=torch.float32)
    if b is not None:
        b = _f32(b, what)
        if b.numel() != n:
            raise BlockUnsupported(f"block kernel: {what} has {b.numel()} elements, expected {n}")
        out[:n] = b.reshape(-1)
    return out


def _round(a: int, b: int) -> int:
    return -(-a // b) * b


def _threads() -> int:
    return max(1, torch.get_num_threads()) if _gomp() else 1


def _act_args(args) -> tuple:
    return tuple(float(a) for a in (args or ()))


def _conv_weight(w, what: str, shape: tuple) -> torch.Tensor:
    w = _f32(w, what)
    if tuple(w.shape) != shape:
        raise BlockUnsupported(f"block kernel: {what} has shape {tuple(w.shape)}, expected {shape}")
    return w


def _prepare_convfirst(x_shape, params):
    if len(params) != 9:
        raise BlockUnsupported(f"block kernel: convfirst_block takes 9 parameters after x, got {len(params)}")
    return _prepare_kxk_first("convfirst_block", x_shape, *params, eps=None)


def _prepare_convnext(x_shape, params):
    if len(params) != 10:
        raise BlockUnsupported(f"block kernel: convnext_block takes 10 parameters after x, got {len(params)}")
    ws, bs, groups, eps, we, be, act, act_args, wp, bp = params
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise BlockUnsupported(f"block kernel: convnext_block's eps must be a float, got {eps!r}") from None
    if not eps >= 0.0 or eps == float("inf"):
        raise BlockUnsupported(f"block kernel: convnext_block's eps must be finite and >= 0, got {eps}")
    return _prepare_kxk_first("convnext_block", x_shape, ws, bs, groups, we, be, act, act_args, wp, bp, eps=eps)


def _prepare_kxk_first(op, x_shape, ws, bs, groups, we, be, act, act_args, wp, bp, eps):
    """convfirst_block (eps None) or convnext_block (the per-pixel channel norm with eps)."""
    if len(x_shape) != 4:
        raise BlockUnsupported(f"block kernel: {op} takes NCHW x, got shape {tuple(x_shape)}")
    N, C, H, W = x_shape
    groups = int(groups)
    if groups < 1 or C % groups:
        raise BlockUnsupported(f"block kernel: {C} channels are not divisible into {groups} groups")
    ws = _f32(ws, "ws")
    if ws.dim() != 4 or ws.shape[-1] != ws.shape[-2] or ws.shape[-1] % 2 == 0:
        raise BlockUnsupported(f"block kernel: the spatial conv must have an odd square kernel, got weight {tuple(ws.shape)}")
    k = ws.shape[-1]
    _conv_weight(ws, "ws", (C, C // groups, k, k))
    we = _f32(we, "we")
    if we.dim() != 4 or we.shape[1] != C or we.shape[2:] != (1, 1):
        raise BlockUnsupported(f"block kernel: the expansion must be a 1x1 conv from {C} channels, got {tuple(we.shape)}")
    hidden = we.shape[0]
    _conv_weight(wp, "wp", (C, hidden, 1, 1))
    act_args = _act_args(act_args)
    key = (op, tuple(x_shape), k, groups, hidden, act, act_args, eps, _threads())
    args = [ws.reshape(-1), _bias(bs, C, C, "bs"), _panels(we.reshape(hidden, C), MR),
            _bias(be, hidden, _round(hidden, MR), "be"), _panels(_f32(wp, "wp").reshape(C, hidden), MR),
            _bias(bp, C, _round(C, MR), "bp")]
    return key, (lambda: ir_.convfirst_plan(N, C, H, W, k, groups, hidden, act, act_args, eps=eps)), args


def _prepare_mbconv(x_shape, params):
    if len(params) != 10:
        raise BlockUnsupported(f"block kernel: mbconv_block takes 10 parameters after x, got {len(params)}")
    we, be, act1, act1_args, wd, bd, act2, act2_args, wp, bp = params
    if len(x_shape) != 4:
        raise BlockUnsupported(f"block kernel: mbconv_block takes NCHW x, got shape {tuple(x_shape)}")
    N, C, H, W = x_shape
    we = _f32(we, "we")
    if we.dim() != 4 or we.shape[1] != C or we.shape[2:] != (1, 1):
        raise BlockUnsupported(f"block kernel: the expansion must be a 1x1 conv from {C} channels, got {tuple(we.shape)}")
    hidden = we.shape[0]
    wd = _f32(wd, "wd")
    if wd.dim() != 4 or wd.shape[-1] != wd.shape[-2] or wd.shape[-1] % 2 == 0:
        raise BlockUnsupported(f"block kernel: the depthwise conv must have an odd square kernel, got {tuple(wd.shape)}")
    k = wd.shape[-1]
    _conv_weight(wd, "wd", (hidden, 1, k, k))
    _conv_weight(wp, "wp", (C, hidden, 1, 1))
    a1, a2 = _act_args(act1_args), _act_args(act2_args)
    key = ("mbconv_block", tuple(x_shape), k, hidden, act1, a1, act2, a2, _threads())
    args = [_panels(we.reshape(hidden, C), MR), _bias(be, hidden, _round(hidden, MR), "be"),
            wd.reshape(-1), _bias(bd, hidden, hidden, "bd"),
            _panels(_f32(wp, "wp").reshape(C, hidden), MR), _bias(bp, C, _round(C, MR), "bp")]
    return key, (lambda: ir_.mbconv_plan(N, C, H, W, hidden, k, act1, a1, act2, a2)), args


def _prepare_inverted(x_shape, params):
    """inverted_block: MobileNetV2's inverted block without the residual, the depthwise conv
    strided (1 or 2) on the expansion's output zero-padded by padding = [left, right, top, bottom]."""
    if len(params) != 12:
        raise BlockUnsupported(f"block kernel: inverted_block takes 12 parameters after x, got {len(params)}")
    we, be, act1, act1_args, wd, bd, stride, padding, act2, act2_args, wp, bp = params
    if len(x_shape) != 4:
        raise BlockUnsupported(f"block kernel: inverted_block takes NCHW x, got shape {tuple(x_shape)}")
    N, C, H, W = x_shape
    we = _f32(we, "we")
    if we.dim() != 4 or we.shape[1] != C or we.shape[2:] != (1, 1):
        raise BlockUnsupported(f"block kernel: the expansion must be a 1x1 conv from {C} channels, got {tuple(we.shape)}")
    hidden = we.shape[0]
    wd = _f32(wd, "wd")
    if wd.dim() != 4 or wd.shape[-1] != wd.shape[-2] or wd.shape[-1] % 2 == 0:
        raise BlockUnsupported(f"block kernel: the depthwise conv must have an odd square kernel, got {tuple(wd.shape)}")
    k = wd.shape[-1]
    _conv_weight(wd, "wd", (hidden, 1, k, k))
    try:
        stride = int(stride)
        padding = tuple(int(p) for p in padding)
    except (TypeError, ValueError):
        raise BlockUnsupported(f"block kernel: inverted_block's stride must be an int and padding 4 ints, "
                               f"got {stride!r}, {padding!r}") from None
    if stride not in (1, 2):
        raise BlockUnsupported(f"block kernel: inverted_block's stride must be 1 or 2, got {stride}")
    if len(padding) != 4 or any(p < 0 or p > k - 1 for p in padding):
        raise BlockUnsupported(f"block kernel: inverted_block's padding must be 4 values in [0, {k - 1}] "
                               f"([left, right, top, bottom]), got {list(padding)}")
    Ho, Wo = ir_.inverted_geometry(H, W, k, stride, padding)
    if Ho < 1 or Wo < 1:
        raise BlockUnsupported(f"block kernel: the padded {H}x{W} map is smaller than the {k}x{k} kernel")
    wp = _f32(wp, "wp")
    if wp.dim() != 4 or wp.shape[1] != hidden or wp.shape[2:] != (1, 1):
        raise BlockUnsupported(f"block kernel: the projection must be a 1x1 conv from {hidden} channels, got {tuple(wp.shape)}")
    Cout = wp.shape[0]
    a1, a2 = _act_args(act1_args), _act_args(act2_args)
    key = ("inverted_block", tuple(x_shape), k, hidden, stride, padding, Cout, act1, a1, act2, a2, _threads())
    args = [_panels(we.reshape(hidden, C), MR), _bias(be, hidden, _round(hidden, MR), "be"),
            wd.reshape(-1), _bias(bd, hidden, hidden, "bd"),
            _panels(wp.reshape(Cout, hidden), MR), _bias(bp, Cout, _round(Cout, MR), "bp")]
    plan = lambda: ir_.inverted_plan(N, C, H, W, hidden, k, stride, padding, Cout, act1, a1, act2, a2)  # noqa: E731
    return key, plan, args, (N, Cout, Ho, Wo)


def _prepare_mlp(x_shape, params):
    if len(params) != 12:
        raise BlockUnsupported(f"block kernel: mlp_block takes 12 parameters after x, got {len(params)}")
    norm, norm_w, norm_b, eps, w1, b1, w3, b3, act, act_args, w2, b2 = params
    if len(x_shape) < 1:
        raise BlockUnsupported("block kernel: mlp_block takes x of shape [..., D]")
    D = x_shape[-1]
    M = 1
    for s in x_shape[:-1]:
        M *= s
    if norm not in ("none", "layer", "rms"):
        raise BlockUnsupported(f"block kernel: unknown norm {norm!r}")
    w1 = _f32(w1, "w1")
    if w1.dim() != 2 or w1.shape[1] != D:
        raise BlockUnsupported(f"block kernel: w1 must be (hidden, {D}), got {tuple(w1.shape)}")
    hidden = w1.shape[0]
    gate = w3 is not None
    if gate:
        w3 = _f32(w3, "w3")
        if tuple(w3.shape) != (hidden, D):
            raise BlockUnsupported(f"block kernel: w3 must be ({hidden}, {D}), got {tuple(w3.shape)}")
    w2 = _f32(w2, "w2")
    if tuple(w2.shape) != (D, hidden):
        raise BlockUnsupported(f"block kernel: w2 must be ({D}, {hidden}), got {tuple(w2.shape)}")
    has_w = norm != "none" and norm_w is not None
    has_b = norm == "layer" and norm_b is not None
    act_args = _act_args(act_args)
    eps = float(eps)
    key = ("mlp_block", M, D, hidden, norm, eps, has_w, has_b, gate, act, act_args, _threads())
    args = [_bias(norm_w if has_w else None, D, D, "norm_w"), _bias(norm_b if has_b else None, D, D, "norm_b"),
            w1.t().contiguous().reshape(-1), _bias(b1, hidden, hidden, "b1")]
    if gate:
        args += [w3.t().contiguous().reshape(-1), _bias(b3, hidden, hidden, "b3")]
    args += [w2.t().contiguous().reshape(-1), _bias(b2, D, D, "b2")]
    return key, (lambda: ir_.mlp_plan(M, D, hidden, norm, eps, has_w, has_b, gate, act, act_args)), args


def compile_block(op: str, x_shape: tuple, params: tuple) -> Callable[[torch.Tensor], torch.Tensor]:
    """op: "convfirst_block" | "convnext_block" | "mbconv_block" | "mlp_block" | "inverted_block"; params: the op's
    arguments after x, in the order of the custom op in kernels/blocks.py (convnext_block's eps a
    float). Returns run(x) -> out for a float32 CPU tensor x of exactly x_shape (contiguous NCHW
    for the conv blocks, [..., D] for mlp_block), out a new contiguous tensor of x's shape
    (inverted_block: (N, Cout, Ho, Wo); its params (we, be, act1, act1_args, wd, bd, stride,
    padding, act2, act2_args, wp, bp), padding [left, right, top, bottom]). Weights are packed
    here, once. Raises BlockUnsupported."""
    x_shape = tuple(int(s) for s in x_shape)
    if op == "convfirst_block":
        prep = _prepare_convfirst
    elif op == "convnext_block":
        prep = _prepare_convnext
    elif op == "mbconv_block":
        prep = _prepare_mbconv
    elif op == "mlp_block":
        prep = _prepare_mlp
    elif op == "inverted_block":
        prep = _prepare_inverted
    else:
        raise BlockUnsupported(f"block kernel: unknown op {op!r} (valid: {', '.join(OPS)})")
    if any(s <= 0 for s in x_shape):
        raise BlockUnsupported(f"block kernel: empty shape {x_shape}")
    try:
        prepared = prep(x_shape, tuple(params))
    except Unsupported as e:
        raise BlockUnsupported(str(e)) from e
    key, make_plan, weights = prepared[:3]
    out_shape = prepared[3] if len(prepared) > 3 else x_shape
    mod = _module(key, make_plan)
    return _Runner(mod, x_shape, weights, out_shape)


class _Runner:
    """run(x): the packed data pointers of (x, weights..., out), the weights' filled in once."""

    def __init__(self, mod: _Module, x_shape: tuple, weights: list[torch.Tensor], out_shape: tuple | None = None):
        self.mod, self.x_shape, self.weights = mod, x_shape, weights
        self.out_shape = tuple(out_shape) if out_shape is not None else x_shape
        self._local = threading.local()

    def _array(self):
        arr = getattr(self._local, "arr", None)
        if arr is None:
            arr = (ctypes.c_void_p * (2 + len(self.weights)))()
            for i, w in enumerate(self.weights):
                arr[1 + i] = w.data_ptr()
            self._local.arr = arr
        return arr

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise BlockUnsupported(f"block kernel: x must be a float32 CPU tensor, got {x.dtype} on {x.device.type}")
        if tuple(x.shape) != self.x_shape:
            raise BlockUnsupported(f"block kernel: compiled for x of shape {self.x_shape}, got {tuple(x.shape)}")
        x = x.contiguous()
        out = torch.empty(self.out_shape, dtype=torch.float32)
        arr = self._array()
        arr[0] = x.data_ptr()
        arr[len(arr) - 1] = out.data_ptr()
        self.mod.fn(ctypes.addressof(arr))
        return out
