"""Compiling generated kernels for a GPU without one: Triton's compiler down to cubin.

The interpreter accepts code that the real compiler rejects (shapes, types, loop-carried
values), so tests compile generated specs for an NVIDIA target here, in a process where
TRITON_INTERPRET is off: `python -m fastc.codegen.triton.offline_compile specs.json` prints, per
spec, "ok" or the compiler's error.
"""
from __future__ import annotations

import json
import sys

TRITON_TYPES = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "f64": "fp64", "i64": "i64", "i32": "i32",
                "i16": "i16", "i8": "i8", "u8": "u8", "b8": "i1"}


def signature(spec) -> dict[str, str]:
    """Parameter name -> Triton type, from the spec's parameter list."""
    names = _names(spec.source, spec.name)
    sig = {}
    for name, p in zip(names, spec.params):
        if p[0] == "input":
            info = spec.inputs[p[1]]
            if info["kind"] == "tensor":
                sig[name] = "*" + TRITON_TYPES[info["dtype"]]
            else:
                sig[name] = "fp32" if info.get("type") == "float" else "i64"
        elif p[0] == "output":
            sig[name] = "*" + TRITON_TYPES[spec.outputs[p[1]]["dtype"]]
        else:
            sig[name] = "i32"
    return sig


def _names(source: str, fn: str) -> list[str]:
    header = source.split(f"def {fn}(", 1)[1].split("):", 1)[0]
    return [a.split(":")[0].strip() for a in header.split(",")]


def compile_offline(spec, arch: int = 90, schedule=None, switch: bool = True):
    """The CompiledKernel of `spec` for sm_`arch` (needs TRITON_INTERPRET off in this process)."""
    import importlib.util
    import tempfile

    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from fastc.costmodel import KernelFeatures, default_choices

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(spec.source)
    module_spec = importlib.util.spec_from_file_location(f"fastc_offline_{spec.name}", f.name)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    fn = getattr(module, spec.name)
    sizes = {"xnumel": 1000, "rnumel": 100, "M": 128, "N": 128, "K": 64, "B": 2}
    schedule = schedule or default_choices().schedule(KernelFeatures(spec.name, spec.kind, "triton", sizes=sizes))
    constexprs = {**schedule.constexprs(spec.kind), "INDEX_DTYPE": tl.int32}
    constexprs.update({name: switch for name in spec.switch})
    sig = signature(spec)
    sig.update({k: "constexpr" for k in constexprs})
    return triton.compile(ASTSource(fn, signature=sig, constexprs=constexprs),
                          target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": schedule.num_warps, "num_stages": schedule.num_stages})


def main(argv=None) -> int:
    from .spec import KernelSpec
    path = (argv or sys.argv[1:])[0]
    results = {}
    for text in json.loads(open(path).read()):
        spec = KernelSpec.from_json(text)
        try:  # a kernel with a PERSISTENT switch compiles both ways
            for switch in ((True, False) if spec.switch else (True,)):
                compiled = compile_offline(spec, switch=switch)
            results[spec.name] = "ok" if "cubin" in compiled.asm else "no cubin"
        except Exception as e:  # noqa: BLE001 - reported per kernel
            results[spec.name] = f"{type(e).__name__}: {e}"[:2000]
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
