"""The native CPU target's stages (codegen/cpu/stages.py): each one dumped under the debug dir in
order, and the IR rewrites (memref.copy as a loop nest, vector math, combining modules) giving the
lowered module the text rewrites they replaced gave."""
import re

import pytest
import torch

from codegen_cases import mark, trace
from fastc.report import REPORTS

pytest.importorskip("torch_mlir", reason="the native CPU target needs torch-mlir")

GENERATED = {"target": "cpu", "kernel_choice": "generated", "on_error": "raise"}

KERNEL_STAGES = ["00-fx.fx", "01-legal-fx.fx", "02-torch.mlir", "03-linalg.mlir", "04-fixed.mlir"]
BUILD_STAGES = ["05-combined.serial.mlir", "06-vector-math.serial.mlir", "07-loops.serial.mlir", "08-llvm.serial.mlir", "09-jit.serial.o"]


def _compile_with_dump(fn, args, debug_dir):
    torch._dynamo.reset()
    start = len(REPORTS)
    out = torch.compile(fn, backend="fastc", options={**GENERATED, "debug_dir": str(debug_dir)})(*args)
    torch.testing.assert_close(out, fn(*args))
    (report,) = REPORTS[start:]
    assert len(report.generated_kernels) == 1 and not report.aten_kernels, report.text()
    (folder,) = debug_dir.glob("graph_*")
    return report.generated_kernels[0], folder / "cpu"


def test_every_stage_of_a_softmax_kernel_is_dumped_in_order(tmp_path):
    # 3 rows: not split by rows on any number of threads (test_cpu_parallel dumps a split kernel)
    name, cpu = _compile_with_dump(lambda x: torch.softmax(x * 0.5, -1), (torch.randn(3, 6),), tmp_path / "dump")
    expected = [f"{name}.{stage}" for stage in KERNEL_STAGES + BUILD_STAGES]
    assert sorted(p.name for p in cpu.iterdir()) == expected   # the file names sort in stage order
    text = {stage: (cpu / f"{name}.{stage}").read_text() for stage in KERNEL_STAGES + BUILD_STAGES[:-1]}
    assert "aten.mul.Tensor" in text["00-fx.fx"] and f"graph @{name}(" in text["01-legal-fx.fx"]
    assert "torch.aten" in text["02-torch.mlir"] and "linalg" not in text["02-torch.mlir"]
    assert "linalg.generic" in text["03-linalg.mlir"] and "torch.aten" not in text["03-linalg.mlir"]
    assert "fastmath<reassoc>" not in text["03-linalg.mlir"] and "fastmath<reassoc>" in text["04-fixed.mlir"]
    combined = text["05-combined.serial.mlir"]
    assert re.search(r"func\.func private @k\d+_body", combined) and f"func.func @{name}(" in combined
    assert "math.exp" in combined and "fastc_expf" not in combined
    vector = text["06-vector-math.serial.mlir"]
    assert "math.exp %" not in vector and "call @fastc_expf" in vector
    assert vector.index("func.func private @fastc_expf") < vector.index("_body")  # helpers first
    assert "llvm.func" in text["08-llvm.serial.mlir"] and "linalg." not in text["08-llvm.serial.mlir"]
    assert (cpu / f"{name}.09-jit.serial.o").read_bytes()[:4] == b"\x7fELF"
    # The graph's own dump keeps the kernel's source (the body and its entry function).
    assert f"func.func @{name}(%a0" in (cpu.parent / f"kernel_{name}.mlir").read_text()


def test_a_lowered_module_from_the_disk_cache_is_dumped_as_such(tmp_path):
    fn, x = (lambda x: (x * 2).exp()), torch.randn(8)
    name, first = _compile_with_dump(fn, (x,), tmp_path / "one")
    _, second = _compile_with_dump(fn, (x,), tmp_path / "two")
    lowered = (second / f"{name}.08-llvm.serial.mlir").read_text()
    assert lowered.startswith("// from the disk cache: ")
    assert lowered.split("\n", 1)[1] == (first / f"{name}.08-llvm.serial.mlir").read_text()


def test_without_a_debug_dir_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTC_DEBUG", raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    fn = lambda x: x.exp() + 1  # noqa: E731
    torch._dynamo.reset()
    torch.compile(fn, backend="fastc", options=GENERATED)(torch.randn(4))
    assert not list((tmp_path / "cwd").iterdir())


# The IR rewrites against the text rewrites they replaced ------------------------------------------

_MATH_F32 = re.compile(r"^(\s*%[\w.#]+ = )math\.(exp|erf|tanh) (%[\w.#]+)(?: fastmath<[a-z,]+>)? : f32$", re.M)
_COPY = re.compile(r"^(\s*)memref\.copy (%[\w.#]+), (%[\w.#]+) : (.+) to (.+)$", re.M)


def _text_route(code, schedule, threads) -> tuple[str, str]:
    """(what was rewritten, the lowered module) by the text rewrites the stages had before: the
    kernel's body spliced out of its module text, a regex for vector math, and the pipeline cut
    where a regex turned memref.copy into linalg.copy."""
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_d
    from torch_mlir.passmanager import PassManager

    from fastc.codegen.cpu import stages
    from fastc.codegen.cpu.fast_math import FUNCTIONS
    used, rewritten = set(), []

    def call(m):
        helper, definition = FUNCTIONS[m.group(2)]
        used.add(definition)
        rewritten.append(m.group(2))
        return f"{m.group(1)}func.call @{helper}({m.group(3)}) : (f32) -> f32"
    body = code.body[code.body.index("{", code.body.index("module")) + 1:code.body.rindex("}")] + "\n"
    body = _MATH_F32.sub(call, body).replace("func.func @", "func.func private @", 1)
    text = "module {\n" + "".join(sorted(used)) + body + code.entry + "}\n"
    steps = stages.lowering_pipeline(schedule, threads)
    cut = steps.index("func.func(refback-munge-memref-copy)")
    context = ir.Context()
    torch_d.register_dialect(context)
    with context:
        module = ir.Module.parse(text)
        PassManager.parse(stages.pipeline_text(steps[:cut])).run(module.operation)
        bufferized = str(module)
        rewritten += ["memref.copy"] * len(_COPY.findall(bufferized))
        module = ir.Module.parse(_COPY.sub(lambda m: f"{m.group(1)}linalg.copy ins({m.group(2)} : {m.group(4)}) "
                                                     f"outs({m.group(3)} : {m.group(5)})", bufferized))
        PassManager.parse(stages.pipeline_text(steps[cut + 1:])).run(module.operation)
    return " ".join(sorted(set(rewritten))), str(module)


@pytest.mark.parametrize("name, fn, args, rewrites", [
    ("strided_copy", lambda x: x.clone(), lambda: (torch.randn(10, 12)[2:7, 3:9],), "memref.copy"),
    ("transposed_copy", lambda x: x.clone(), lambda: (torch.randn(6, 5).t(),), "memref.copy"),
    ("exp_erf_tanh", lambda x: x.exp() + torch.erf(x) * torch.tanh(x), lambda: (torch.randn(4, 8),), "erf exp tanh"),
])
def test_ir_rewrites_lower_as_the_text_rewrites_did(name, fn, args, rewrites, tmp_path):
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_d

    from fastc.codegen.cpu import build, runtime
    from fastc.codegen.cpu.combine import KernelCode
    from fastc.codegen.cpu.entry import entry_function
    from fastc.codegen.cpu.params import describe
    from fastc.codegen.cpu.stage_dump import StageDump
    from fastc.codegen.cpu.stages import run_build_stages, run_kernel_stages
    from fastc.ir.kernel_plan import KernelPlan
    args = args()
    gm = mark(trace(fn, *args), "pointwise")
    (kernel,) = KernelPlan.of(gm).kernels
    context = ir.Context()
    torch_d.register_dialect(context)
    module = run_kernel_stages(kernel, "k0_body", context)
    d = describe(kernel)
    entry = entry_function(kernel.name, "k0_body", build._only_func(module).type, d["params"], d["out_params"])
    code = KernelCode(kernel.name, module.operation.get_asm(use_local_scope=True), entry)

    entries = run_build_stages([code], build.SERIAL, StageDump(str(tmp_path)))
    lowered = (tmp_path / f"{kernel.name}.08-llvm.serial.mlir").read_text()
    rewritten, reference = _text_route(code, build.SERIAL, runtime.threads())
    assert rewritten == rewrites               # the case exercises the rewrites it is named for
    assert lowered == reference
    assert "memrefCopy" not in lowered         # copies are loops, not runtime calls
    assert "@expf" not in lowered and "@erff" not in lowered and "@tanhf" not in lowered  # no libm

    from fastc.codegen.cpu.native_kernel import NativeKernel
    native = NativeKernel(kernel.name, kernel.kind, d["params"], d["out_params"], d["shapes"], d["strides"],
                          d["dtypes"], 1, [], entries={build.SERIAL: entries[kernel.name]})
    by_node = dict(zip([n for n in gm.graph.nodes if n.op == "placeholder"], args))
    (out,) = native.run(*[by_node[n] for n in kernel.inputs], schedule=build.SERIAL)
    torch.testing.assert_close(out, fn(*args))


# The rewrites on small modules -------------------------------------------------------------------

def test_vector_math_replaces_scalar_f32_ops_and_defines_each_helper_once():
    from torch_mlir import ir

    from fastc.codegen.cpu.fast_math import use_vector_math
    context = ir.Context()
    module = ir.Module.parse("""
    func.func @f(%x: f32, %d: f64, %v: vector<4xf32>) -> (f32, f64, vector<4xf32>) {
      %a = math.exp %x fastmath<afn> : f32
      %b = math.tanh %a : f32
      %c = math.exp %b : f32
      %e = math.exp %d : f64
      %w = math.erf %v : vector<4xf32>
      return %c, %e, %w : f32, f64, vector<4xf32>
    }""", context)
    assert use_vector_math(module) == 3
    text = str(module)
    assert text.count("call @fastc_expf") == 2 and text.count("call @fastc_tanhf") == 1
    assert "math.exp %arg1 : f64" in text and "math.erf %arg2 : vector<4xf32>" in text  # not f32 scalars
    defined = re.findall(r"func\.func (?:private )?@(\w+)", text)
    assert defined == ["fastc_expf", "fastc_tanhf", "f"]
    module.operation.verify()
    assert use_vector_math(module) == 0 and str(module) == text   # nothing left to rewrite


def test_combine_moves_each_kernels_functions_into_one_module():
    from torch_mlir import ir

    from fastc.codegen.cpu.combine import KernelCode, combine
    from fastc.codegen.cpu.entry import entry_function
    from fastc.codegen.cpu.params import Param
    codes = []
    for i in range(2):
        body = (f"module {{\n  func.func @k{i}_body(%x: tensor<4xf32>) -> tensor<4xf32> {{\n"
                f"    return %x : tensor<4xf32>\n  }}\n}}\n")
        func_type = ir.FunctionType(ir.Type.parse("(tensor<4xf32>) -> tensor<4xf32>", ir.Context()))
        codes.append(KernelCode(f"k{i}_pointwise", body, entry_function(
            f"k{i}_pointwise", f"k{i}_body", func_type, [Param("tensor", 1)], [Param("tensor", 1)])))
    module = combine(codes, ir.Context())
    module.operation.verify()
    funcs = [(op.attributes["sym_name"], "sym_visibility" in op.attributes) for op in module.body.operations]
    assert [(ir.StringAttr(name).value, private) for name, private in funcs] == [
        ("k0_body", True), ("k1_body", True), ("k0_pointwise", False), ("k1_pointwise", False)]
