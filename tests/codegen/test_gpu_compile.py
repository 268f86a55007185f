"""Generated kernels compile with Triton's real compiler for an NVIDIA GPU (sm_90), down to cubin.

The interpreter accepts code the compiler rejects (types of loop-carried values, shapes), and
this machine has no GPU, so the specs are lowered here for target "triton" and compiled offline
in a child process with TRITON_INTERPRET off (fastc.codegen.triton.offline_compile).
"""

import pytest
import torch
import torch.nn.functional as F

from codegen_cases import compile_offline

CASES = {
    "pointwise": (lambda x, y: (torch.sigmoid(x * 2 + y).relu() ** 3 - torch.tanh(x) + x.abs() ** 2.5,
                                torch.where(x > y, x, y).to(torch.int32)),
                  (torch.randn(4, 6), torch.randn(6)), "pointwise", {}),
    "pointwise_half": (lambda x: ((x.float().exp() > 1).to(torch.bfloat16) + x.to(torch.bfloat16),),
                       (torch.randn(4, 6, dtype=torch.float16),), "pointwise", {}),
    "reduction_looped": (lambda x: (torch.softmax(x, -1), F.layer_norm(x, (37,)), x.argmax(-1),
                                    torch.var_mean(x, -1)[0]),
                         (torch.randn(6, 37),), "reduction", {"persistent_max": 0}),
    "reduction_persistent": (lambda x: (torch.log_softmax(x, -1), x.amin(-1), (x > 0).any(-1), x.sum(-1)),
                             (torch.randn(6, 37),), "reduction", {}),
    "reduction_outer_half": (lambda x: (x.sum(0), x.amax(0)), (torch.randn(9, 5, dtype=torch.float16),),
                             "reduction", {}),
    "reduction_dynamic_rows": (lambda x: (torch.softmax(x, -1), x.argmax(-1)), (torch.randn(6, 37),),
                               "reduction", {"symbolic": True}),
    "reduction_prod_dynamic_rows": (lambda x: (x.prod(-1), (x > 0).to(torch.int32).prod(-1), (x > 0).all(-1)),
                                    (torch.randn(6, 37),), "reduction", {"symbolic": True}),
    "pointwise_bitwise_scalars": (lambda x: (x & 6, 5 | x, torch.bitwise_xor(x, 3)),
                                  (torch.randint(-9, 9, (4, 6), dtype=torch.int32),), "pointwise", {}),
    "linear_gelu": (lambda x, w, b: F.gelu(F.linear(x, w, b)),
                    (torch.randn(8, 32), torch.randn(16, 32), torch.randn(16)), "matmul", {}),
    "mm_fp16": (lambda x, w: torch.mm(x, w).relu(),
                (torch.randn(8, 32, dtype=torch.float16), torch.randn(32, 16, dtype=torch.float16)), "matmul", {}),
    "bmm_bf16": (lambda x, w: torch.bmm(x, w) * 0.5,
                 (torch.randn(2, 8, 32, dtype=torch.bfloat16), torch.randn(2, 32, 16, dtype=torch.bfloat16)),
                 "matmul", {}),
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return compile_offline(CASES, tmp_path_factory.mktemp("offline"), {"TRITON_DEFAULT_FP_FUSION": "1"})


@pytest.mark.parametrize("case", sorted(CASES))
def test_generated_kernel_compiles_for_sm90(case, compiled):
    assert compiled[case] == "ok", compiled[case]
