"""fastc.costmodel.mlir_features and fastc.costmodel.machine: known counts on small hand-written
modules (each number worked out by hand in the test), a module tiled, fused and vectorized by the
transform dialect against the same module untouched, determinism, the candidate features, and the
machine's fingerprint."""
import builtins
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("torch_mlir")

from torch_mlir import ir  # noqa: E402
from torch_mlir.passmanager import PassManager  # noqa: E402

from fastc.costmodel import machine  # noqa: E402
from fastc.costmodel.features import KernelFeatures  # noqa: E402
from fastc.costmodel.mlir_features import (  # noqa: E402
    CANDIDATE_FEATURES, DEFAULT_EXTENT, FEATURE_VERSION, FEATURES, MODULE_FEATURES, candidate_features,
    module_features)
from fastc.ir.schedule import Schedule  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / "docs" / "costmodel-features.md"

# exp(a + b) over 4x8: 32 adds, 32 exps; reads a and b (the init's block argument is unused).
ELEMENTWISE = """
#id = affine_map<(d0, d1) -> (d0, d1)>
func.func @body(%a: tensor<4x8xf32>, %b: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %e = tensor.empty() : tensor<4x8xf32>
  %r = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%a, %b : tensor<4x8xf32>, tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%x: f32, %y: f32, %o: f32):
    %s = arith.addf %x, %y : f32
    %t = math.exp %s : f32
    linalg.yield %t : f32
  } -> tensor<4x8xf32>
  return %r : tensor<4x8xf32>
}
"""

# Row sums of 4x8: a fill of 4 zeros, then 32 adds over a (parallel, reduction) domain.
ROW_SUM = """
#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>
func.func @body(%a: tensor<4x8xf32>) -> tensor<4xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4xf32>
  %acc = linalg.fill ins(%z : f32) outs(%e : tensor<4xf32>) -> tensor<4xf32>
  %r = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]}
      ins(%a : tensor<4x8xf32>) outs(%acc : tensor<4xf32>) {
  ^bb0(%x: f32, %o: f32):
    %s = arith.addf %x, %o : f32
    linalg.yield %s : f32
  } -> tensor<4xf32>
  return %r : tensor<4xf32>
}
"""

# A multiply in a loop 0..16 step 4 (4 trips), nested in a loop 0..3 (3 trips).
LOOPS = """
func.func @loops(%x: f32) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
  %c4 = arith.constant 4 : index
  %c16 = arith.constant 16 : index
  %r = scf.for %i = %c0 to %c3 step %c1 iter_args(%acc = %x) -> f32 {
    %s = scf.for %j = %c0 to %c16 step %c4 iter_args(%a = %acc) -> f32 {
      %y = arith.mulf %a, %a : f32
      scf.yield %y : f32
    }
    scf.yield %s : f32
  }
  return %r : f32
}
"""

# a + b over 16 floats as two tiles of vector<8xf32>: per trip two reads, one add, one write.
VECTOR_ADD = """
func.func @vec(%a: tensor<16xf32>, %b: tensor<16xf32>) -> tensor<16xf32> {
  %c0 = arith.constant 0 : index
  %c8 = arith.constant 8 : index
  %c16 = arith.constant 16 : index
  %pad = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<16xf32>
  %r = scf.for %i = %c0 to %c16 step %c8 iter_args(%out = %e) -> tensor<16xf32> {
    %va = vector.transfer_read %a[%i], %pad {in_bounds = [true]} : tensor<16xf32>, vector<8xf32>
    %vb = vector.transfer_read %b[%i], %pad {in_bounds = [true]} : tensor<16xf32>, vector<8xf32>
    %s = arith.addf %va, %vb : vector<8xf32>
    %w = vector.transfer_write %s, %out[%i] {in_bounds = [true]} : vector<8xf32>, tensor<16xf32>
    scf.yield %w : tensor<16xf32>
  }
  return %r : tensor<16xf32>
}
"""

# Row maxima of a vector<4x8xf32>: one multi_reduction of 32 elements.
VECTOR_REDUCTION = """
func.func @red(%v: vector<4x8xf32>, %acc: vector<4xf32>) -> vector<4xf32> {
  %r = vector.multi_reduction <maxnumf>, %v, %acc [1] : vector<4x8xf32> to vector<4xf32>
  return %r : vector<4xf32>
}
"""

# An entry function (memrefs in, memref out) calling a body that calls a private helper per
# element (one mul, one exp); a dead helper nobody calls.
CALLS = """
#id = affine_map<(d0, d1) -> (d0, d1)>
func.func private @helper(%x: f32) -> f32 {
  %y = arith.mulf %x, %x : f32
  %z = math.exp %y : f32
  return %z : f32
}
func.func private @dead(%x: f32) -> f32 {
  %y = arith.divf %x, %x : f32
  return %y : f32
}
func.func private @body(%a: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %e = tensor.empty() : tensor<4x8xf32>
  %r = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%a : tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%x: f32, %o: f32):
    %t = func.call @helper(%x) : (f32) -> f32
    linalg.yield %t : f32
  } -> tensor<4x8xf32>
  return %r : tensor<4x8xf32>
}
func.func @entry(%a0: memref<4x8xf32>, %o0: memref<4x8xf32>) {
  %t0 = bufferization.to_tensor %a0 restrict : memref<4x8xf32> to tensor<4x8xf32>
  %r = func.call @body(%t0) : (tensor<4x8xf32>) -> tensor<4x8xf32>
  bufferization.materialize_in_destination %r in restrict writable %o0 : (tensor<4x8xf32>, memref<4x8xf32>) -> ()
  return
}
"""

# A tile loop 0..30 step 4 whose last tile is short: the tile's size is an affine.min, whose
# constant bound (4) is the tile's size; a loop to an unknown bound %n.
PARTIAL_TILES = """
#min = affine_map<(d0) -> (4, -d0 + 30)>
#id = affine_map<(d0) -> (d0)>
func.func @tiles(%a: tensor<30xf32>, %n: index) -> tensor<30xf32> {
  %c0 = arith.constant 0 : index
  %c4 = arith.constant 4 : index
  %c30 = arith.constant 30 : index
  %r = scf.for %i = %c0 to %c30 step %c4 iter_args(%out = %a) -> tensor<30xf32> {
    %s = affine.min #min(%i)
    %x = tensor.extract_slice %a[%i] [%s] [1] : tensor<30xf32> to tensor<?xf32>
    %y = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel"]} outs(%x : tensor<?xf32>) {
    ^bb0(%o: f32):
      %n2 = arith.negf %o : f32
      linalg.yield %n2 : f32
    } -> tensor<?xf32>
    %w = tensor.insert_slice %y into %out[%i] [%s] [1] : tensor<?xf32> into tensor<30xf32>
    scf.yield %w : tensor<30xf32>
  }
  %u = scf.for %i = %c0 to %n step %c4 iter_args(%acc = %r) -> tensor<30xf32> {
    scf.yield %acc : tensor<30xf32>
  }
  return %u : tensor<30xf32>
}
"""

# Softmax of 4x64 rows, for the transform-dialect schedule below.
SOFTMAX = """
#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>
module attributes {transform.with_named_sequence} {
  func.func @body(%x: tensor<4x64xf32>) -> tensor<4x64xf32> {
    %z = arith.constant 0.0 : f32
    %e0 = tensor.empty() : tensor<4xf32>
    %acc = linalg.fill ins(%z : f32) outs(%e0 : tensor<4xf32>) -> tensor<4xf32>
    %e1 = tensor.empty() : tensor<4x64xf32>
    %ex = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
        ins(%x : tensor<4x64xf32>) outs(%e1 : tensor<4x64xf32>) {
    ^bb0(%a: f32, %o: f32):
      %r = math.exp %a : f32
      linalg.yield %r : f32
    } -> tensor<4x64xf32>
    %s = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]}
        ins(%ex : tensor<4x64xf32>) outs(%acc : tensor<4xf32>) {
    ^bb0(%a: f32, %o: f32):
      %r = arith.addf %a, %o : f32
      linalg.yield %r : f32
    } -> tensor<4xf32>
    %y = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]}
        ins(%ex, %s : tensor<4x64xf32>, tensor<4xf32>) outs(%e1 : tensor<4x64xf32>) {
    ^bb0(%a: f32, %b: f32, %o: f32):
      %r = arith.divf %a, %b : f32
      linalg.yield %r : f32
    } -> tensor<4x64xf32>
    return %y : tensor<4x64xf32>
  }
  TRANSFORM
}
"""

# Tile the last op's rows by 2 and fuse its producers into the loop; optionally vectorize.
TILE_AND_FUSE = """
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
    %gs = transform.structured.match ops{["linalg.generic"]} in %root : (!transform.any_op) -> !transform.any_op
    %a, %b, %last = transform.split_handle %gs : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op)
    %t, %l = transform.structured.fuse %last tile_sizes [2, 0] : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
    VECTORIZE
    transform.yield
  }
"""
VECTORIZE = """
    %f = transform.structured.match ops{["func.func"]} in %root : (!transform.any_op) -> !transform.any_op
    %v = transform.structured.vectorize_children_and_apply_patterns %f : (!transform.any_op) -> !transform.any_op
"""


def scheduled(vectorize: bool) -> str:
    """SOFTMAX after TILE_AND_FUSE (and vectorization), as text (the transform script stays in it)."""
    script = TILE_AND_FUSE.replace("VECTORIZE", VECTORIZE if vectorize else "")
    context = ir.Context()
    module = ir.Module.parse(SOFTMAX.replace("TRANSFORM", script), context)
    PassManager.parse("builtin.module(transform-interpreter, canonicalize, cse)", context).run(module.operation)
    return str(module)


def test_elementwise_generic_counts_its_domain():
    f = module_features(ELEMENTWISE)
    assert f["ops_add"] == 32 and f["ops_transcendental"] == 32 and f["ops_total"] == 64
    assert f["flops"] == 64 and f["dynamic_instructions"] == 64
    assert f["linalg_ops"] == 1 and f["linalg_ops_outside_loops"] == 1 and f["linalg_ops_in_loops"] == 0
    assert f["linalg_parallel_dims"] == 2 and f["linalg_reduction_dims"] == 0
    assert f["linalg_iterations"] == 32 and f["linalg_domain_max"] == 32
    assert f["linalg_reduction_iterations"] == 0 and f["linalg_reduction_extent_max"] == 0
    assert f["linalg_bytes_read"] == 2 * 4 * 8 * 4 and f["linalg_bytes_written"] == 4 * 8 * 4
    assert f["arg_inputs"] == 2 and f["arg_outputs"] == 1
    assert f["arg_bytes_read"] == 256 and f["arg_bytes_written"] == 128 and f["arg_bytes"] == 384
    assert f["arg_elements_written"] == 32
    assert f["reuse"] == 1.0 and f["arithmetic_intensity"] == 64 / 384
    assert f["temp_count"] == 1 and f["temp_bytes_max"] == 128
    assert f["loops"] == 0 and f["vector_ops"] == 0 and f["dynamic_extents"] == 0


def test_reduction_iterators_and_fill():
    f = module_features(ROW_SUM)
    assert f["ops_add"] == 32
    assert f["linalg_ops"] == 2  # the fill and the generic
    assert f["linalg_parallel_dims"] == 1 + 1 and f["linalg_reduction_dims"] == 1
    assert f["linalg_iterations"] == 4 + 32 and f["linalg_reduction_iterations"] == 32
    assert f["linalg_reduction_extent_max"] == 8
    # the generic reads its input and its accumulator; the fill reads nothing
    assert f["linalg_bytes_read"] == 128 + 16 and f["linalg_bytes_written"] == 16 + 16


def test_named_linalg_ops_count_their_payload():
    f = module_features("""
    func.func @mm(%a: tensor<8x16xf32>, %b: tensor<16x4xf32>, %c: tensor<8x4xf32>) -> tensor<8x4xf32> {
      %0 = linalg.matmul ins(%a, %b : tensor<8x16xf32>, tensor<16x4xf32>) outs(%c : tensor<8x4xf32>) -> tensor<8x4xf32>
      return %0 : tensor<8x4xf32>
    }""")
    assert f["ops_mul"] == 8 * 4 * 16 and f["ops_add"] == 8 * 4 * 16
    assert f["linalg_parallel_dims"] == 2 and f["linalg_reduction_dims"] == 1
    assert f["linalg_reduction_extent_max"] == 16


def test_loop_trip_counts_multiply():
    f = module_features(LOOPS)
    assert f["ops_mul"] == 3 * 4
    assert f["loops"] == 2 and f["loop_nests"] == 1 and f["loop_depth_max"] == 2
    assert f["loop_trip_innermost"] == 4 and f["loop_step_innermost"] == 4 and f["loop_trip_outermost"] == 3
    assert f["loop_iterations"] == 3 + 3 * 4
    assert f["loop_body_ops_innermost"] == 1


def test_vector_ops_count_lanes():
    f = module_features(VECTOR_ADD)
    assert f["ops_add"] == 16                      # 2 trips x 8 lanes
    assert f["vector_ops"] == 2 * 4 and f["dynamic_instructions"] == 2 * 4
    assert f["transfer_reads"] == 4 and f["transfer_writes"] == 2
    assert f["transfer_bytes"] == 6 * 8 * 4
    assert f["vector_lanes_max"] == 8 and f["vector_lanes_typical"] == 8 and f["vector_bits_max"] == 256
    assert f["vectorized_fraction"] == 1.0
    assert f["bytes_accessed"] == 192 and f["arg_bytes"] == 192
    r = module_features(VECTOR_REDUCTION)
    assert r["ops_minmax"] == 32 and r["vector_reductions"] == 1 and r["vector_lanes_max"] == 32


def test_calls_count_the_callee_per_call():
    f = module_features(CALLS)
    assert f["ops_mul"] == 32 and f["ops_transcendental"] == 32
    assert f["ops_div"] == 0                        # @dead is never called
    assert f["calls"] == 1 + 32
    # the entry's memrefs: one read (to_tensor), one written (materialize_in_destination)
    assert f["arg_inputs"] == 1 and f["arg_outputs"] == 1
    assert f["arg_bytes_read"] == 128 and f["arg_bytes_written"] == 128


def test_partial_tiles_and_unknown_bounds():
    f = module_features(PARTIAL_TILES)
    trips = math.ceil(30 / 4)
    assert f["extract_slices"] == trips and f["insert_slices"] == trips
    assert f["linalg_domain_max"] == 4              # the affine.min's constant bound
    assert f["ops_other"] == trips * 4              # negf
    assert f["dynamic_extents"] == 1                # the loop to %n
    assert f["loop_iterations"] == trips + DEFAULT_EXTENT
    assert f["loop_nests"] == 2


def test_each_branch_of_an_if_counts_at_its_share():
    f = module_features("""
    func.func @f(%x: f32, %c: i1) -> f32 {
      %y = scf.if %c -> f32 {
        %z = arith.mulf %x, %x : f32
        scf.yield %z : f32
      } else {
        %z = arith.addf %x, %x : f32
        %w = arith.addf %z, %x : f32
        scf.yield %w : f32
      }
      return %y : f32
    }""")
    assert f["ops_mul"] == 0.5 and f["ops_add"] == 1.0


def test_forall_is_a_parallel_loop():
    f = module_features("""
    func.func @f(%a: tensor<8xf32>) -> tensor<8xf32> {
      %r = scf.forall (%i) in (4) shared_outs(%o = %a) -> (tensor<8xf32>) {
        %s = tensor.extract_slice %o[%i] [2] [1] : tensor<8xf32> to tensor<2xf32>
        %t = arith.mulf %s, %s : tensor<2xf32>
        scf.forall.in_parallel {
          tensor.parallel_insert_slice %t into %o[%i] [2] [1] : tensor<2xf32> into tensor<8xf32>
        }
      }
      return %r : tensor<8xf32>
    }""")
    assert f["parallel_loops"] == 1 and f["loop_trip_innermost"] == 4
    assert f["extract_slices"] == 4 and f["insert_slices"] == 4 and f["slice_bytes"] == 8 * 8


def test_tile_and_fuse_then_vectorize():
    plain = module_features(SOFTMAX.replace("TRANSFORM", ""))
    tiled = module_features(scheduled(vectorize=False))
    vector = module_features(scheduled(vectorize=True))
    for kind in ("ops_add", "ops_div", "ops_transcendental"):  # the same work, however scheduled
        assert plain[kind] == tiled[kind] == vector[kind] == 4 * 64
    assert plain["loops"] == 0 and plain["linalg_ops_outside_loops"] == 4
    assert tiled["loops"] == 1 and tiled["loop_trip_innermost"] == 2 and tiled["loop_step_innermost"] == 2
    assert tiled["linalg_ops_outside_loops"] == 0 and tiled["linalg_ops_in_loops"] == 4
    assert tiled["linalg_domain_max"] == 2 * 64 < plain["linalg_domain_max"]
    assert tiled["linalg_operand_bytes_max"] < plain["linalg_operand_bytes_max"]
    assert tiled["extract_slices"] > 0 and tiled["vector_ops"] == 0
    assert vector["linalg_ops"] == 0 and vector["vectorized_fraction"] == 1.0
    assert vector["transfer_reads"] > 0 and vector["transfer_writes"] > 0 and vector["vector_reductions"] > 0
    assert vector["dynamic_instructions"] < tiled["dynamic_instructions"]
    assert plain["arg_bytes"] == tiled["arg_bytes"] == vector["arg_bytes"] == 2 * 4 * 64 * 4


def test_deterministic_and_complete():
    text = scheduled(vectorize=True)
    first, second = module_features(text), module_features(text)
    assert first == second
    assert module_features(ir.Module.parse(text, ir.Context())) == first
    assert tuple(first) == MODULE_FEATURES
    assert all(isinstance(v, float) and math.isfinite(v) for v in first.values())
    assert FEATURES == MODULE_FEATURES + CANDIDATE_FEATURES and len(set(FEATURES)) == len(FEATURES)
    assert isinstance(FEATURE_VERSION, int)


def test_every_feature_documented():
    rows = set(re.findall(r"^\| `([a-zA-Z0-9_]+)` \|", DOC.read_text(), re.MULTILINE))
    assert set(FEATURES) <= rows, sorted(set(FEATURES) - rows)
    assert rows <= set(FEATURES), sorted(rows - set(FEATURES))


MACHINE = {"logical_cores": 8, "torch_threads": 4, "avx2": True, "avx512f": False, "fma": True,
           "vector_bits": 256, "l1d_bytes": 32768, "l2_bytes": 1 << 20, "l3_bytes": 1 << 25}
KERNEL = KernelFeatures(name="k0", kind="pointwise", target="cpu", sizes={"xnumel": 32}, ops=2,
                        bytes_read=256, bytes_written=128)


def test_candidate_features_with_schedule_kernel_and_machine():
    parallel = Schedule(XBLOCK=0, parallel=True)
    f = candidate_features(ELEMENTWISE, schedule=parallel, kernel=KERNEL, machine=MACHINE)
    assert tuple(f) == FEATURES
    assert f["ops_add"] == 32 and f["is_aten"] == 0.0
    assert f["sched_parallel"] == 1.0 and f["sched_XBLOCK"] == 0.0
    assert f["kernel_kind_pointwise"] == 1.0 and f["kernel_kind_reduction"] == 0.0
    assert f["kernel_numel"] == 32 and f["kernel_rnumel"] == 0 and f["kernel_bytes_read"] == 256
    assert f["machine_threads"] == 4 and f["machine_avx512"] == 0.0 and f["machine_vector_bits"] == 256
    assert f["threads_used"] == 4 and f["work_per_thread"] == 32 / 4 and f["bytes_per_thread"] == 384 / 4
    assert f["bytes_per_thread_over_l2"] == 96 / (1 << 20)
    assert f["working_set_over_l1"] == 128 / 32768

    serial = candidate_features(ELEMENTWISE, schedule=Schedule(XBLOCK=0), kernel=KERNEL, machine=MACHINE)
    assert serial["threads_used"] == 1 and serial["work_per_thread"] == 32

    aten = candidate_features(ELEMENTWISE, is_aten=True, machine=MACHINE)
    assert aten["is_aten"] == 1.0 and aten["threads_used"] == 4
    assert math.isnan(aten["sched_parallel"]) and math.isnan(aten["kernel_numel"])
    assert aten["work_per_thread"] == 32 / 4        # the module's elements, without a kernel


def test_candidate_features_read_schedule_fields_that_may_be_missing():
    @dataclass(frozen=True)
    class OldSchedule:  # a Schedule before the loop fields
        XBLOCK: int = 0
        parallel: bool = False
    f = candidate_features(ELEMENTWISE, schedule=OldSchedule(), machine=MACHINE)
    assert f["sched_tile_outer"] == 0 and f["sched_vectorize"] == 0 and f["sched_unroll"] == 1
    new = Schedule(XBLOCK=0, tile_outer=4, tile_inner=16, vectorize=True, unroll=2)
    g = candidate_features(None, schedule=new, machine=MACHINE)
    assert (g["sched_tile_outer"], g["sched_tile_inner"], g["sched_vectorize"], g["sched_unroll"]) == (4, 16, 1, 2)
    assert math.isnan(g["ops_total"])               # no module


def test_fingerprint_and_machine_id():
    first = machine.fingerprint()
    for key in ("cpu", "logical_cores", "torch_threads", "avx2", "avx512f", "fma", "vector_bits",
                "caches", "l1d_bytes", "l2_bytes", "l3_bytes", "os", "arch"):
        assert key in first
    first["cpu"] = "changed"                        # a copy: the next call is not affected
    assert machine.fingerprint() == machine.fingerprint() != first
    assert machine.machine_id() == machine.machine_id()
    assert machine.machine_id().startswith(machine.cpu_name()) and " cpus / " in machine.machine_id()
    f = candidate_features(ELEMENTWISE)             # this machine by default
    assert f["machine_cores"] == machine.fingerprint()["logical_cores"]


def test_fingerprint_without_proc_and_sys(monkeypatch, tmp_path):
    real_open = builtins.open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc"):
            raise OSError(f"no {path}")
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", no_proc)
    monkeypatch.setattr(machine, "CACHE_DIR", tmp_path / "missing")
    machine._fingerprint.cache_clear()
    try:
        f = machine.fingerprint()
        assert f["caches"] == [] and f["l2_bytes"] == 0 and f["avx2"] is False and f["vector_bits"] == 0
        assert f["cpu"] and machine.machine_id().endswith(f"/ {f['arch'] or 'unknown ISA'}")
    finally:
        machine._fingerprint.cache_clear()
