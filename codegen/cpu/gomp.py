"""Threads for native kernels on torch's own OpenMP thread pool (GNU OpenMP, libgomp).

ATen's parallel backend on Linux is OpenMP: torch ships libgomp (torch/lib/libgomp.so.1) and
runs `at::parallel_for` as `#pragma omp parallel`, i.e. GOMP_parallel, on a team of worker
threads that libgomp keeps per calling thread. Native kernels split by rows (split.py) run their
chunks through the same entry point of the same library, so they use the very workers ATen uses:
one pool, no second runtime spinning against it.

`library()` finds the copy torch loaded (in /proc/self/maps; dlopen of the same file returns the
loaded one), `symbols()` gives the addresses generated code calls (registered in each
ExecutionEngine, runtime.execution_engine), and `trampoline(...)` writes, in MLIR's LLVM dialect,
the entry point of a split kernel:

    void _mlir_fastc_rows_K(void **packed)     // the packed arguments of the whole kernel
      n = min(chunks, omp_get_max_threads())   // torch.set_num_threads is that ICV
      n > 1 ? GOMP_parallel(team, packed, n, 0) : serial(packed)
    team(packed): for c = thread; c < chunks; c += team size: chunk(packed, c)
    void _mlir_fastc_rows_serial_K(void **packed): for c in 0..chunks: chunk(packed, c)
    chunk(packed, c): copies of the split descriptors with aligned pointer
                      + c * rows * stride0 * itemsize and rows as dim 0,
                      then K_rows(descriptors and scalars)    // the serial code of one chunk

Both entries take the packed argument array of the whole kernel, as a kernel built whole does,
so callers do not change, and both run the same machine code on each row: the serial schedule of
a split kernel is its serial entry, and its values are the parallel one's, bit for bit. (A kernel
built whole for n rows would not do: LLVM's choices depend on the trip count, e.g. a sum over
10 x 33 elements is unrolled into scalar adds in order, over 20 x 33 vectorized in another order.)
"""
from __future__ import annotations

import ctypes
import logging
import os
import threading

import torch

log = logging.getLogger("fastc")

SYMBOLS = ("GOMP_parallel", "omp_get_thread_num", "omp_get_num_threads", "omp_get_max_threads")

_LOCK = threading.Lock()
_FOUND: list = []    # [(path, {symbol: address})] once looked for; (None, {}) when none


def _mapped_openmp() -> list[str]:
    """OpenMP runtimes mapped into this process, torch's own first."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
    except OSError:
        return []
    torch_dir = os.path.dirname(os.path.realpath(torch.__file__))

    def rank(path: str):
        base = os.path.basename(path)
        return (not path.startswith(torch_dir), not base.startswith("libgomp"), path)
    names = ("libgomp", "libiomp5", "libomp")
    return sorted((p for p in paths if os.path.basename(p).startswith(names) and ".so" in p), key=rank)


def _find() -> tuple[str | None, dict]:
    if not torch.backends.openmp.is_available():
        log.info("fastc: torch runs ATen without OpenMP; native kernels run on one thread")
        return None, {}
    for path in _mapped_openmp():
        try:
            lib = ctypes.CDLL(path)
            addresses = {s: ctypes.cast(getattr(lib, s), ctypes.c_void_p).value for s in SYMBOLS}
        except (OSError, AttributeError):
            continue
        if all(addresses.values()):
            return path, addresses
    log.info("fastc: torch's OpenMP runtime (GOMP_parallel) not found; native kernels run on one thread")
    return None, {}


def library() -> str | None:
    """The path of the OpenMP runtime ATen runs on (torch's libgomp), or None (no threads)."""
    with _LOCK:
        if not _FOUND:
            _FOUND.append(_find())
        return _FOUND[0][0]


def symbols() -> dict[str, int]:
    """{name: address} of what split kernels call in torch's OpenMP runtime ({} when none)."""
    library()
    return _FOUND[0][1]


DECLARATIONS = """\
  llvm.func @GOMP_parallel(!llvm.ptr, !llvm.ptr, i32, i32)
  llvm.func @omp_get_thread_num() -> i32
  llvm.func @omp_get_num_threads() -> i32
  llvm.func @omp_get_max_threads() -> i32
"""


def entry_symbol(name: str) -> str:
    """What `ExecutionEngine.raw_lookup` takes for the parallel entry of split kernel `name` (it
    prefixes `_mlir_`, the prefix the function is defined with)."""
    return f"fastc_rows_{name}"


def serial_symbol(name: str) -> str:
    """... and for its serial entry (every chunk on the calling thread, in order)."""
    return f"fastc_rows_serial_{name}"


def trampoline(name: str, target: str, args: list[tuple], chunks: int) -> str:
    """LLVM-dialect functions running kernel `name` as `chunks` calls of `target` (the C
    interface of the chunk's entry function, `_mlir_ciface_...`), on torch's OpenMP threads.

    `args`, per argument of the entry function, in order: ("tensor", rank, rows, itemsize), rows
    per chunk (None: passed whole), or ("scalar", MLIR type). Needs DECLARATIONS once per module."""
    team, chunk = f"fastc_rows_{name}_team", f"fastc_rows_{name}_chunk"
    lines = [f"  llvm.func @{chunk}(%packed: !llvm.ptr, %c: i64) {{"]
    operands, types = [], []
    for i, a in enumerate(args):
        lines += [f"    %slotp{i} = llvm.getelementptr %packed[{i}] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr",
                  f"    %slot{i} = llvm.load %slotp{i} : !llvm.ptr -> !llvm.ptr"]
        if a[0] == "scalar":
            lines.append(f"    %v{i} = llvm.load %slot{i} : !llvm.ptr -> {a[1]}")
            operands.append(f"%v{i}")
            types.append(a[1])
            continue
        _, rank, rows, itemsize = a
        lines.append(f"    %desc{i} = llvm.load %slot{i} : !llvm.ptr -> !llvm.ptr")
        types.append("!llvm.ptr")
        if rows is None:
            operands.append(f"%desc{i}")
            continue
        struct = (f"!llvm.struct<(ptr, ptr, i64, array<{rank} x i64>, array<{rank} x i64>)>")
        lines += [
            f"    %d{i} = llvm.load %desc{i} : !llvm.ptr -> {struct}",
            f"    %al{i} = llvm.extractvalue %d{i}[1] : {struct}",
            f"    %st{i} = llvm.extractvalue %d{i}[4, 0] : {struct}",
            f"    %step{i} = llvm.mlir.constant({rows * itemsize} : i64) : i64",
            f"    %cs{i} = llvm.mul %c, %step{i} : i64",
            f"    %off{i} = llvm.mul %cs{i}, %st{i} : i64",
            f"    %p{i} = llvm.getelementptr %al{i}[%off{i}] : (!llvm.ptr, i64) -> !llvm.ptr, i8",
            f"    %rows{i} = llvm.mlir.constant({rows} : i64) : i64",
            f"    %e{i}a = llvm.insertvalue %p{i}, %d{i}[0] : {struct}",
            f"    %e{i}b = llvm.insertvalue %p{i}, %e{i}a[1] : {struct}",
            f"    %e{i}c = llvm.insertvalue %rows{i}, %e{i}b[3, 0] : {struct}",
            f"    %one{i} = llvm.mlir.constant(1 : i64) : i64",
            f"    %local{i} = llvm.alloca %one{i} x {struct} : (i64) -> !llvm.ptr",
            f"    llvm.store %e{i}c, %local{i} : {struct}, !llvm.ptr",
        ]
        operands.append(f"%local{i}")
    lines += [f"    llvm.call @{target}({', '.join(operands)}) : ({', '.join(types)}) -> ()",
              "    llvm.return",
              "  }"]
    # What the text is parsed next to (the module defines it: with_trampolines skips it).
    lines.insert(0, f"  llvm.func @{target}({', '.join(types)})")
    lines += [
        f"  llvm.func @{team}(%packed: !llvm.ptr) {{",
        "    %t = llvm.call @omp_get_thread_num() : () -> i32",
        "    %nt = llvm.call @omp_get_num_threads() : () -> i32",
        "    %first = llvm.sext %t : i32 to i64",
        "    %step = llvm.sext %nt : i32 to i64",
        "    llvm.br ^loop(%first : i64)",
        "  ^loop(%c: i64):",
        f"    %n = llvm.mlir.constant({chunks} : i64) : i64",
        "    %more = llvm.icmp \"slt\" %c, %n : i64",
        "    llvm.cond_br %more, ^body, ^done",
        "  ^body:",
        f"    llvm.call @{chunk}(%packed, %c) : (!llvm.ptr, i64) -> ()",
        "    %next = llvm.add %c, %step : i64",
        "    llvm.br ^loop(%next : i64)",
        "  ^done:",
        "    llvm.return",
        "  }",
        f"  llvm.func @_mlir_{entry_symbol(name)}(%packed: !llvm.ptr) {{",
        "    %max = llvm.call @omp_get_max_threads() : () -> i32",
        f"    %chunks = llvm.mlir.constant({chunks} : i32) : i32",
        "    %fewer = llvm.icmp \"slt\" %max, %chunks : i32",
        "    %n = llvm.select %fewer, %max, %chunks : i1, i32",
        "    %two = llvm.mlir.constant(2 : i32) : i32",
        "    %threads = llvm.icmp \"sge\" %n, %two : i32",
        "    llvm.cond_br %threads, ^parallel, ^serial",
        "  ^parallel:",
        f"    %fn = llvm.mlir.addressof @{team} : !llvm.ptr",
        "    %flags = llvm.mlir.constant(0 : i32) : i32",
        "    llvm.call @GOMP_parallel(%fn, %packed, %n, %flags) : (!llvm.ptr, !llvm.ptr, i32, i32) -> ()",
        "    llvm.return",
        "  ^serial:",
        f"    llvm.call @_mlir_{serial_symbol(name)}(%packed) : (!llvm.ptr) -> ()",
        "    llvm.return",
        "  }",
        f"  llvm.func @_mlir_{serial_symbol(name)}(%packed: !llvm.ptr) {{",
        "    %first = llvm.mlir.constant(0 : i64) : i64",
        "    llvm.br ^loop(%first : i64)",
        "  ^loop(%c: i64):",
        f"    %n = llvm.mlir.constant({chunks} : i64) : i64",
        "    %more = llvm.icmp \"slt\" %c, %n : i64",
        "    llvm.cond_br %more, ^body, ^done",
        "  ^body:",
        f"    llvm.call @{chunk}(%packed, %c) : (!llvm.ptr, i64) -> ()",
        "    %one = llvm.mlir.constant(1 : i64) : i64",
        "    %next = llvm.add %c, %one : i64",
        "    llvm.br ^loop(%next : i64)",
        "  ^done:",
        "    llvm.return",
        "  }",
    ]
    return "\n".join(lines) + "\n"
