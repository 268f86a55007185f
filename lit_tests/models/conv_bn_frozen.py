# RUN: %PYTHON %s | filecheck %s
# A Conv2d + BatchNorm2d + ReLU model compiled by fastc in eval mode: parameters are frozen and
# the BatchNorm is folded into the convolution, so the final graph has one convolution, no
# batch norm, and only the image as input.
import glob
import os
import sys
import tempfile

import torch
import torch.nn as nn

model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()).eval()
x = torch.randn(2, 3, 8, 8)
with tempfile.TemporaryDirectory() as dump, torch.no_grad():
    compiled = torch.compile(model, backend="fastc", options={"debug_dir": dump, "on_error": "raise"})
    err = (compiled(x) - model(x)).abs().max().item()
    final = sorted(glob.glob(os.path.join(dump, "graph_*", "*-dead-code.fx")))[-1]
    sys.stdout.write(open(final).read())
print(f"max error ok: {err < 1e-5}")

# CHECK-LABEL: graph @forward(%arg{{[0-9]+}}_1: f32[2, 3, 8, 8]) {
# CHECK-NOT: batch_norm
# CHECK: %convolution: f32[2, 4, 8, 8] = aten.convolution.default(%arg{{[0-9]+}}_1, %convolution_weight_bn, %convolution_bias_bn
# CHECK-NEXT: %relu: f32[2, 4, 8, 8] = aten.relu.default(%convolution)
# CHECK-NEXT: return (%relu,)
# CHECK: max error ok: True
