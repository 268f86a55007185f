# RUN: %PYTHON %s | filecheck %s
# recalibrate-batchnorm needs inputs to measure statistics on, so this test hands them over in a
# PassContext (fastc-opt has none to give: there the pass changes nothing).
#
# A 1x1 convolution scales channel 1 by 2; two calibration batches (2 images and 1) give channel 0
# the values {1, 2, 3} and channel 1 {2, 4, 6}: mean [2, 4], unbiased variance [1, 4]. The second
# batch norm reads the first one's output, normalized with the new statistics ({-1, 0, 1} in
# both channels), so its statistics become mean 0, variance 1.
import torch

from fastc.ir import parse_graph, print_graph
from fastc.pass_manager import run_passes
from fastc.passes import AccuracyCheck, PassContext, RecalibrateBatchNorm, RelativeError
from fastc.report import GraphReport

GRAPH = """
graph @conv_bn_bn(%x: f32[2, 2, 1, 1]) {
  %w: f32[2, 2, 1, 1] = const dense<[1.0, 0.0, 0.0, 2.0]>
  %mean: f32[2] = const dense<[9.0, 9.0]>
  %var: f32[2] = const dense<[9.0, 9.0]>
  %mean2: f32[2] = const dense<[5.0, 5.0]>
  %var2: f32[2] = const dense<[5.0, 5.0]>
  %c: f32[2, 2, 1, 1] = aten.convolution.default(%x, %w, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %bn: (f32[2, 2, 1, 1], f32[0], f32[0]) = aten._native_batch_norm_legit_no_training.default(%c, none, none, %mean, %var, 0.1, 0.0)
  %y: f32[2, 2, 1, 1] = getitem(%bn, 0)
  %bn2: (f32[2, 2, 1, 1], f32[0], f32[0]) = aten._native_batch_norm_legit_no_training.default(%y, none, none, %mean2, %var2, 0.1, 0.0)
  %z: f32[2, 2, 1, 1] = getitem(%bn2, 0)
  return (%z,)
}
"""
batches = [[torch.tensor([1.0, 1.0, 3.0, 3.0]).view(2, 2, 1, 1)], [torch.tensor([2.0, 2.0]).view(1, 2, 1, 1)]]
pass_ = RecalibrateBatchNorm()

gm = parse_graph(GRAPH)
print("rewrites:", pass_.run(gm, PassContext(calibration_inputs=batches)))
gm.recompile()
print(print_graph(gm))
# CHECK: rewrites: 2
# CHECK-LABEL: graph @conv_bn_bn
# CHECK: %bn_mean: f32[2] = const dense<[2.0, 4.0]>
# CHECK: %bn_var: f32[2] = const dense<[1.0, 4.0]>
# CHECK: _native_batch_norm_legit_no_training.default(%c, none, none, %bn_mean, %bn_var, 0.1, 0.0)
# CHECK: %bn2_mean: f32[2] = const dense<[0.0, 0.0]>
# CHECK: %bn2_var: f32[2] = const dense<[1.0, 1.0]>
# CHECK: _native_batch_norm_legit_no_training.default(%y, none, none, %bn2_mean, %bn2_var, 0.1, 0.0)

# Without inputs there is nothing to measure: the graph stays as it is.
gm = parse_graph(GRAPH)
print("without inputs:", pass_.run(gm, PassContext()))
# CHECK: without inputs: 0

# Through the pass manager: a lossy pass runs only when named, and its cost (the relative L2
# output error against the graph before it, on held-out inputs) is measured.
for requested in (frozenset(), frozenset({"recalibrate-batchnorm"})):
    gm = parse_graph(GRAPH)
    ctx = PassContext(calibration_inputs=batches, held_out_inputs=batches, requested=requested,
                      accuracy=AccuracyCheck(RelativeError(batches)))
    report = GraphReport(0, "inference")
    run_passes(gm, [pass_], report, ctx=ctx)
    record = report.passes[0]
    print(f"named={bool(requested)} rewrites={record.rewrites} measured={record.error is not None} "
          f"note={record.note}")
# CHECK: named=False rewrites=0 measured=False note=left out: lossy, not named by the user
# CHECK: named=True rewrites=2 measured=True note=None

# Statistics that are graph inputs, not constants, are not touched.
gm = parse_graph("""
graph @stats_are_inputs(%x: f32[2, 2, 1, 1], %mean: f32[2], %var: f32[2]) {
  %bn: (f32[2, 2, 1, 1], f32[0], f32[0]) = aten._native_batch_norm_legit_no_training.default(%x, none, none, %mean, %var, 0.1, 1e-05)
  %y: f32[2, 2, 1, 1] = getitem(%bn, 0)
  return (%y,)
}
""")
x = torch.ones(2, 2, 1, 1)
print("stats are inputs:", pass_.run(gm, PassContext(calibration_inputs=[[x, torch.zeros(2), torch.ones(2)]])))
# CHECK: stats are inputs: 0
