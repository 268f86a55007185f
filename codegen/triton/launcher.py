"""Running a KernelSpec: bind sizes from the real inputs, allocate outputs, pick a schedule and
a grid, and launch the compiled kernel."""
from __future__ import annotations

from dataclasses import replace

import torch

from fastc.costmodel import KernelFeatures, default_choices

from ..cache import compile_source
from ..errors import Unsupported
from ..schedule import Schedule, next_pow2, persistent_reduction
from .spec import KernelSpec, dtype_of

INT32_LIMIT = 2**31 - 1


class GeneratedKernel:
    def __init__(self, spec: KernelSpec):
        self.spec = spec
        self.name, self.kind, self.source = spec.name, spec.kind, spec.source
        self._fn = None
        codes = {p[1] for p in spec.params if p[0] == "size"} | set(spec.sizes.values())
        codes |= {c for o in spec.outputs for c in o["shape"]}
        self._host = {c: compile(c, "<fastc size>", "eval") for c in codes}

    def __repr__(self) -> str:
        return f"GeneratedKernel({self.name})"

    @property
    def fn(self):
        if self._fn is None:
            self._fn = compile_source(self.source, self.name)
        return self._fn

    @property
    def needs_symbols(self) -> list[str]:
        """Size symbols the caller must pass to `run` (sizes of graph inputs the kernel does not read)."""
        return sorted({name for name, i, _ in self.spec.bindings if i is None})

    def run(self, *inputs, schedule: Schedule | None = None, symbols: dict | None = None) -> tuple:
        """Runs the kernel on `inputs` (tensors and ints, in kernel-input order); returns one value
        per kernel output (a tuple of tensors for a tuple-valued output). `symbols` gives the
        values of the size symbols in `needs_symbols`."""
        spec = self.spec
        self._check(inputs)
        env = self._bind(inputs, symbols or {})
        ev = self._evaluator(env)
        device = next((x.device for x in inputs if isinstance(x, torch.Tensor)), None)
        device = device or torch.device(spec.outputs[0].get("device", "cpu") if spec.outputs else "cpu")
        outs = [torch.empty([ev(c) for c in o["shape"]], dtype=dtype_of(o["dtype"]), device=device)
                for o in spec.outputs]
        sizes = {k: ev(c) for k, c in spec.sizes.items()}
        result = self._group(outs)
        if any(o.numel() == 0 for o in outs):
            return result
        if any(v == 0 for v in sizes.values()):
            raise Unsupported(f"{self.name}: empty rows or operands (sizes {sizes})")
        import triton.language as tl
        schedule = schedule or default_choices().schedule(KernelFeatures(spec.name, spec.kind, "triton", sizes=sizes))
        switches, covers = {}, dict(spec.covers)
        if "PERSISTENT" in spec.switch:
            size, limit = spec.switch["PERSISTENT"]
            switches["PERSISTENT"] = persistent_reduction(sizes[size], limit)
            if switches["PERSISTENT"]:
                covers["RBLOCK"] = size
        for block, size in covers.items():  # legality, whatever the schedule prefers
            if getattr(schedule, block) < sizes[size]:
                schedule = replace(schedule, **{block: next_pow2(sizes[size])})
        args = []
        for p in spec.params:
            if p[0] == "input":
                args.append(inputs[p[1]])
            elif p[0] == "output":
                args.append(outs[p[1]])
            elif p[0] == "stride":
                args.append(inputs[p[1]].stride(p[2]))
            elif p[0] == "symbol":
                args.append(env[p[1]])
            else:
                args.append(ev(p[1]))
        wide = self._needs_int64(inputs, outs, sizes)
        self.fn[self._grid(sizes, schedule)](
            *args, **schedule.constexprs(spec.kind), **switches, INDEX_DTYPE=tl.int64 if wide else tl.int32,
            num_warps=schedule.num_warps, num_stages=schedule.num_stages)
        return result

    def problem_sizes(self, *inputs, symbols: dict | None = None) -> dict[str, int]:
        """The sizes a schedule is chosen for (xnumel, rnumel or M, N, K) at these inputs."""
        ev = self._evaluator(self._bind(inputs, symbols or {}))
        return {k: ev(c) for k, c in self.spec.sizes.items()}

    def _evaluator(self, env):
        return lambda code: int(eval(self._host[code], {"__builtins__": {"max": max, "min": min}}, env))

    def _bind(self, inputs, symbols) -> dict[str, int]:
        env: dict[str, int] = {}
        for name, i, d in self.spec.bindings:
            if i is None:
                if name not in symbols:
                    raise ValueError(f"{self.name} needs the value of size symbol {name} (symbols=...)")
                value = int(symbols[name])
            else:
                value = int(inputs[i].shape[d]) if d is not None else int(inputs[i])
            if env.setdefault(name, value) != value:
                raise ValueError(f"{self.name}: size {name} is {env[name]} in one input and {value} in "
                                 f"input {i}; the kernel was generated for equal sizes")
        return env

    def _check(self, inputs) -> None:
        if len(inputs) != len(self.spec.inputs):
            raise ValueError(f"{self.name} takes {len(self.spec.inputs)} inputs, got {len(inputs)}")
        for i, (x, want) in enumerate(zip(inputs, self.spec.inputs)):
            if want["kind"] != "tensor":
                continue
            if not isinstance(x, torch.Tensor) or x.dim() != want["rank"]:
                raise ValueError(f"{self.name}: input {i} must be a tensor of rank {want['rank']}, "
                                 f"got {type(x).__name__} {getattr(x, 'shape', '')}")
            for d, size in enumerate(want["static"]):
                if size is not None and x.shape[d] != size:
                    raise ValueError(f"{self.name}: input {i} has shape {tuple(x.shape)}, "
                                     f"the kernel was generated for size {size} in dim {d}")

    def _group(self, outs) -> tuple:
        result = []
        for k, kind in enumerate(self.spec.groups):
            mine = [t for t, o in zip(outs, self.spec.outputs) if o["group"] == k]
            result.append(mine[0] if kind == "tensor" else tuple(mine))
        return tuple(result)

    def _grid(self, sizes, s: Schedule) -> tuple:
        cdiv = lambda a, b: (a + b - 1) // b
        if self.kind == "matmul":
            return (cdiv(sizes["M"], s.BLOCK_M) * cdiv(sizes["N"], s.BLOCK_N), 1, sizes.get("B", 1))
        return (cdiv(sizes["xnumel"], s.XBLOCK),)

    @staticmethod
    def _needs_int64(inputs, outs, sizes) -> bool:
        extents = [sum((n - 1) * abs(st) for n, st in zip(x.shape, x.stride())) + 1
                   for x in inputs if isinstance(x, torch.Tensor) and x.numel() > 0]
        extents += [o.numel() for o in outs]
        extents.append(sizes.get("xnumel", 1) * max(sizes.get("rnumel", 1), 1))
        extents += [sizes.get("M", 1) * sizes.get("K", 1), sizes.get("K", 1) * sizes.get("N", 1)]
        return max(extents) > INT32_LIMIT
