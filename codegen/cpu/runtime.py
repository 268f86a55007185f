"""Running compiled kernels: the LLVM ExecutionEngine (linked to torch's own OpenMP runtime for
kernels split by rows, gomp.py), and memref descriptors over torch tensors.

A ranked memref descriptor is {allocated ptr, aligned ptr, offset, sizes[rank], strides[rank]},
all 8-byte fields, so one call packs every argument into a single int64 array and passes
pointers into it: no tensor data is copied, strides are passed as they are.
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys
import tempfile
import threading

import torch

log = logging.getLogger("fastc")

def threads() -> int:
    return max(1, torch.get_num_threads())


def execution_engine(module, shared_libs: list[str]):
    """An ExecutionEngine for `module` (LLVM dialect). Kernels split by rows call torch's own
    OpenMP runtime (gomp.py): its entry points are registered by address, so the JIT links to the
    copy torch loaded, never to another."""
    from torch_mlir.execution_engine import ExecutionEngine

    from . import gomp
    engine = ExecutionEngine(module, opt_level=int(os.environ.get("FASTC_CPU_OPT_LEVEL", "2")), shared_libs=shared_libs)
    engine.raw_register_runtime("memrefCopy", ctypes.cast(_MEMREF_COPY, ctypes.c_void_p))
    for name, address in gomp.symbols().items():
        engine.raw_register_runtime(name, ctypes.c_void_p(address))
    engine.initialize()
    return engine


class Diagnostics:
    """A fresh (or given) MLIR context whose diagnostics are collected instead of printed.

    MLIR prints a diagnostic nobody handles to stderr (the ExecutionEngine's "LLVM Translation
    failed for operation: ..."), and LLVM's JIT writes its own errors ("JIT session error: Symbols
    not found: ...") straight to file descriptor 2. Inside `with Diagnostics() as d`, `d.check(fn)`
    runs fn with both collected: a failure raises NativeBuildError carrying them (the reason a
    kernel runs as ATen), and nothing reaches the terminal."""

    def __init__(self, context=None):
        """`context`: an existing MLIR context to collect the diagnostics of (default: a new one)."""
        from torch_mlir import ir
        self.context = context if context is not None else ir.Context()
        self.messages: list[str] = []
        self._handler = None

    def __enter__(self):
        self._handler = self.context.attach_diagnostic_handler(self._collect)
        return self

    def __exit__(self, *exc):
        self._handler.detach()
        return False

    def _collect(self, d) -> bool:
        from torch_mlir import ir
        if d.severity in (ir.DiagnosticSeverity.ERROR, ir.DiagnosticSeverity.WARNING):
            notes = "".join(f" ({n.message})" for n in d.notes)
            self.messages.append(f"{str(d.message).strip()}{notes}")
        return True  # handled: not printed

    def check(self, fn):
        """fn(), with MLIR diagnostics and LLVM's stderr output collected; NativeBuildError
        naming them when fn raises."""
        start = len(self.messages)
        failure = None
        with CapturedStderr() as err:
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - re-raised with the compiler's own words
                failure = e
        if failure is None:
            said = self.messages[start:] + ([err.text.strip()] if err.text.strip() else [])
            if said:  # warnings, not errors: kept in the log, off the terminal
                log.debug("fastc: native compiler output: %s", "; ".join(said))
            return result
        said = self.messages[start:] + [line.strip() for line in err.text.splitlines() if line.strip()]
        first = (str(failure).strip().splitlines() or [""])[0][:200]
        if not said:  # an MLIRError carries its diagnostics in its own message
            raise NativeBuildError(f"{type(failure).__name__}: {str(failure).strip()}") from failure
        raise NativeBuildError("; ".join(dict.fromkeys(said)) + f" ({type(failure).__name__}: {first})") from failure


class NativeBuildError(RuntimeError):
    """MLIR or LLVM failed to build a module; the message holds their diagnostics."""


_STDERR_LOCK = threading.RLock()


class CapturedStderr:
    """What is written to file descriptor 2 meanwhile (native code bypasses sys.stderr), in
    `.text` after the block; nothing of it reaches the real stderr. One capture at a time in the
    process; output of other threads in that window is collected too (Diagnostics logs it at debug
    level when the build succeeds), a price paid only while a module is being built."""

    def __init__(self):
        self.text = ""

    def __enter__(self):
        _STDERR_LOCK.acquire()
        self._saved = self._file = None
        try:
            if sys.stderr is not None:
                sys.stderr.flush()  # what Python buffered so far goes to the real stderr
            self._file = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        except (OSError, ValueError):  # no fd 2 to redirect: nothing to capture
            self._close()
        return self

    def __exit__(self, *exc):
        try:
            if self._saved is not None:
                os.dup2(self._saved, 2)
                self._file.seek(0)
                self.text = self._file.read().decode("utf-8", "replace")
        finally:
            self._close()
            _STDERR_LOCK.release()
        return False

    def _close(self):
        if self._saved is not None:
            os.close(self._saved)
            self._saved = None
        if self._file is not None:
            self._file.close()
            self._file = None


def entry_point(engine, name: str, symbol: str | None = None):
    """The packed entry of `name`: a C function taking one array of argument pointers (`symbol`:
    what raw_lookup takes for it when it is not the C interface of `name`, as for a kernel split
    by rows)."""
    address = engine.raw_lookup(symbol or "_mlir_ciface_" + name)
    if not address:
        raise RuntimeError(f"compiled module has no function {name}")
    return ctypes.CFUNCTYPE(None, ctypes.c_void_p)(address)


class Arguments:
    """Packs tensors and scalars into one call's argument array.

    `layout` per argument: ("tensor", rank) | ("tensor", 1, "flat") | ("int",) | ("float",) |
    ("bool",). Tensors take 3 + 2 * rank int64 slots (a memref descriptor: allocated pointer,
    aligned pointer, offset, sizes, strides) and are passed as a pointer to their descriptor; a
    "flat" tensor is described as 1-D of its numel elements (a contiguous tensor of any shape, for
    a kernel that runs flat). Scalars take one slot, passed by value (a pointer to the slot).

    `call` fills every slot at each call. With `fixed` (per argument: a tensor's (sizes, strides),
    the same at every call, or None for a scalar), each thread's array is filled once with the
    offsets, sizes and strides, and a call writes only the data pointers and scalars into it
    (`pointer_slot`, `arrays`): what NativeKernel.bound's code does for static kernels."""

    def __init__(self, layout: list[tuple], fixed: list | None = None):
        self.layout = layout
        self.offsets, total = [], 0
        for entry in layout:
            self.offsets.append(total)
            total += 3 + 2 * entry[1] if entry[0] == "tensor" else 1
        self.slots = total
        self.nargs = len(layout)
        self.template = self._template(fixed) if fixed is not None else None
        self._local = threading.local()

    def _template(self, fixed: list) -> list[int]:
        """The argument array with every descriptor's offset (0), sizes and strides; pointers
        and scalars 0 (written at each call)."""
        flat = [0] * self.slots
        for entry, offset, described in zip(self.layout, self.offsets, fixed):
            if entry[0] != "tensor":
                continue
            sizes, strides = described
            if len(sizes) != entry[1] or len(strides) != entry[1]:
                raise ValueError(f"descriptor {described} for a rank-{entry[1]} argument")
            flat[offset + 3:offset + 3 + 2 * entry[1]] = [*map(int, sizes), *map(int, strides)]
        return flat

    def pointer_slot(self, i: int) -> int:
        """Argument i's slot: a tensor's allocated pointer (its aligned pointer is the next
        slot), or a scalar's value."""
        return self.offsets[i]

    def call(self, fn, values) -> None:
        flat: list[int] = []
        floats = False
        for entry, v in zip(self.layout, values):
            if entry[0] == "tensor":
                p = v.data_ptr()
                if len(entry) > 2:  # "flat": contiguous, seen as 1-D
                    flat += (p, p, 0, v.numel(), 1)
                else:
                    flat += (p, p, 0, *v.shape, *v.stride())
            elif entry[0] == "float":
                flat.append(0)
                floats = True
            else:
                flat.append(int(v))
        buf, packed = self._buffers()
        buf[:] = flat
        if floats:
            for i, (entry, v) in enumerate(zip(self.layout, values)):
                if entry[0] == "float":
                    ctypes.c_double.from_buffer(buf, 8 * self.offsets[i]).value = float(v)
        fn(packed)

    def arrays(self):
        """This thread's (int64 argument array, the same memory as doubles, the address of the
        packed argument pointers: what the entry function takes); `self._local.arrays` after
        the first call in a thread."""
        self._buffers()
        return self._local.arrays

    def _buffers(self):
        """This thread's argument array and the packed pointers into it (made once per thread:
        a compiled model may be called from several threads at once)."""
        mine = getattr(self._local, "buffers", None)
        if mine is None:
            buf = (ctypes.c_int64 * max(1, self.slots))()
            if self.template is not None:
                buf[:len(self.template)] = self.template
            base = ctypes.addressof(buf)
            pointers = (ctypes.c_void_p * max(1, self.nargs))(*[base + 8 * o for o in self.offsets])
            paddr = ctypes.addressof(pointers)
            packed = (ctypes.c_void_p * max(1, self.nargs))(*[
                paddr + 8 * i if entry[0] == "tensor" else base + 8 * self.offsets[i]
                for i, entry in enumerate(self.layout)])
            doubles = (ctypes.c_double * max(1, self.slots)).from_buffer(buf)
            mine = self._local.buffers = (buf, packed, pointers)
            self._local.arrays = (buf, doubles, ctypes.addressof(packed))
        return mine[0], mine[1]


class _Unranked(ctypes.Structure):
    _fields_ = [("rank", ctypes.c_int64), ("descriptor", ctypes.c_void_p)]


_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _view(unranked: _Unranked, element_size: int) -> torch.Tensor:
    rank = unranked.rank
    fields = (ctypes.c_int64 * (3 + 2 * rank)).from_address(unranked.descriptor)
    aligned, offset = fields[1], fields[2]
    sizes, strides = list(fields[3:3 + rank]), list(fields[3 + rank:3 + 2 * rank])
    span = 1 + sum((s - 1) * abs(st) for s, st in zip(sizes, strides)) if all(sizes) else 0
    dtype = _INT_OF_SIZE[element_size]
    raw = (ctypes.c_byte * (span * element_size)).from_address(aligned + offset * element_size)
    flat = torch.frombuffer(raw, dtype=dtype) if span else torch.empty(0, dtype=dtype)
    return flat.as_strided(sizes, strides)


@ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.POINTER(_Unranked), ctypes.POINTER(_Unranked))
def _MEMREF_COPY(element_size, source, target):
    """MLIR's `memrefCopy` runtime function (memref.copy between non-contiguous layouts), which
    the ExecutionEngine in the torch-mlir wheel does not ship: copies bit patterns through torch."""
    _view(target.contents, element_size).copy_(_view(source.contents, element_size))
