"""Tiny Triton block-kernel cases (kernels/block_triton.py), run in a child process.

    python block_triton_cases.py interpret OUT.json   (TRITON_INTERPRET=1 in the environment)
        runs every CASES entry on CPU tensors in Triton's interpreter and writes, per case, the
        error against the block's ATen reference in the same dtype and against the reference
        computed in float32 from the same (rounded) values.
    python block_triton_cases.py offline OUT.json     (TRITON_INTERPRET unset)
        compiles every OFFLINE entry for sm_90 down to cubin with meta tensors and writes "ok"
        or the error, and checks that CPU tensors are refused outside the interpreter.

Triton picks interpreter-or-compiler when it is first imported, hence the child processes (see
bcq_kernel_cases.py). Importing this module (for CASES) does not import triton.
"""
import json
import sys

ACTS = ("none", "relu", "hardtanh", "gelu", "gelu-tanh", "silu", "sigmoid", "tanh", "hardswish")


def _act_args(act):
    return [-0.5, 0.75] if act == "hardtanh" else []


# name -> (op, dtype, problem options, config); the problem is built by `build`.
CASES = {
    "convfirst_g4_k3": ("convfirst_block", "float32",
                        dict(n=2, c=16, hw=(6, 6), groups=4, k=3, expand=4, act="gelu"), None),
    "convfirst_g4_k3_tiles": ("convfirst_block", "float32",
                              dict(n=2, c=16, hw=(6, 6), groups=4, k=3, expand=4, act="silu"),
                              {"BLOCK_P": 16, "BLOCK_H": 16}),
    "convfirst_dw_k7": ("convfirst_block", "float32",
                        dict(n=2, c=16, hw=(6, 6), groups=16, k=7, expand=4, act="gelu"), None),
    "convfirst_dense_k3_nobias": ("convfirst_block", "float32",
                                  dict(n=1, c=12, hw=(5, 7), groups=1, k=3, expand=3, act="hardswish", bias=False),
                                  None),
    "convfirst_g4_k3_fp16": ("convfirst_block", "float16",
                             dict(n=2, c=16, hw=(6, 6), groups=4, k=3, expand=4, act="gelu"), None),
    "convfirst_dw_k7_bf16": ("convfirst_block", "bfloat16",
                             dict(n=2, c=16, hw=(6, 6), groups=16, k=7, expand=4, act="relu"), None),
    "convnext_dw_k7": ("convnext_block", "float32",
                       dict(n=2, c=16, hw=(6, 6), groups=16, k=7, expand=4, act="gelu"), None),
    "convnext_dw_k7_fp16": ("convnext_block", "float16",
                            dict(n=2, c=16, hw=(6, 6), groups=16, k=7, expand=4, act="gelu"), None),
    "convnext_dw_k3_c24": ("convnext_block", "float32",
                           dict(n=2, c=24, hw=(5, 5), groups=24, k=3, expand=4, act="gelu"), None),
    "convnext_g3_k5_c12_nobias_tiles": ("convnext_block", "float32",
                                        dict(n=1, c=12, hw=(5, 7), groups=3, k=5, expand=3, act="silu",
                                             bias=False, eps=1e-3), {"BLOCK_P": 16, "BLOCK_H": 16}),
    "convnext_dw_k3_c24_bf16": ("convnext_block", "bfloat16",
                                dict(n=2, c=24, hw=(5, 5), groups=24, k=3, expand=4, act="gelu"), None),
    "mbconv_relu6_4x4": ("mbconv_block", "float32",
                         dict(n=2, c=16, hw=(4, 4), k=3, expand=4, act1="hardtanh", act1_args=[0.0, 6.0],
                              act2="hardtanh", act2_args=[0.0, 6.0]), None),
    "mbconv_relu6_1x1": ("mbconv_block", "float32",
                         dict(n=2, c=16, hw=(1, 1), k=3, expand=4, act1="hardtanh", act1_args=[0.0, 6.0],
                              act2="hardtanh", act2_args=[0.0, 6.0]), None),
    "mbconv_k5_silu_tiles": ("mbconv_block", "float32",
                             dict(n=1, c=10, hw=(5, 6), k=5, expand=3, act1="silu", act1_args=[],
                                  act2="sigmoid", act2_args=[], bias=False), {"BLOCK_P": 16, "BLOCK_H": 16}),
    "mbconv_relu6_4x4_fp16": ("mbconv_block", "float16",
                              dict(n=2, c=16, hw=(4, 4), k=3, expand=4, act1="hardtanh", act1_args=[0.0, 6.0],
                                   act2="hardtanh", act2_args=[0.0, 6.0]), None),
    "mlp_layer_gelu": ("mlp_block", "float32", dict(shape=(2, 10, 32), hidden=128, norm="layer", act="gelu"), None),
    "mlp_rms_silu_gate": ("mlp_block", "float32", dict(shape=(3, 7, 24), hidden=64, norm="rms", act="silu", gate=True),
                          None),
    "mlp_none_relu_d24": ("mlp_block", "float32", dict(shape=(17, 24), hidden=40, norm="none", act="relu"),
                          {"BLOCK_M": 16, "BLOCK_H": 16}),
    "mlp_layer_noaffine_nobias": ("mlp_block", "float32",
                                  dict(shape=(5, 24), hidden=48, norm="layer", act="gelu-tanh", affine=False,
                                       bias=False), None),
    "mlp_layer_gelu_fp16": ("mlp_block", "float16",
                            dict(shape=(2, 10, 32), hidden=128, norm="layer", act="gelu"), None),
    "mlp_rms_silu_gate_bf16": ("mlp_block", "bfloat16",
                               dict(shape=(3, 7, 24), hidden=64, norm="rms", act="silu", gate=True), None),
    **{f"mlp_act_{act}": ("mlp_block", "float32", dict(shape=(4, 20), hidden=32, norm="none", act=act), None)
       for act in ACTS},
}

# name -> (op, dtype, problem options): compiled for sm_90 with meta tensors.
OFFLINE = {
    **{f"convfirst_{dt}": ("convfirst_block", dt, dict(n=2, c=16, hw=(6, 6), groups=4, k=3, expand=4, act="gelu"))
       for dt in ("float32", "float16")},
    **{f"convfirst_dw_k7_{dt}": ("convfirst_block", dt,
                                 dict(n=8, c=96, hw=(56, 56), groups=96, k=7, expand=4, act="gelu"))
       for dt in ("float32", "float16")},
    **{f"convnext_{dt}": ("convnext_block", dt,
                          dict(n=2, c=24, hw=(5, 5), groups=24, k=3, expand=4, act="gelu"))
       for dt in ("float32", "float16")},
    **{f"convnext_t_stage1_{dt}": ("convnext_block", dt,
                                   dict(n=8, c=96, hw=(56, 56), groups=96, k=7, expand=4, act="gelu"))
       for dt in ("float32", "float16")},
    **{f"convnext_t_stage3_{dt}": ("convnext_block", dt,
                                   dict(n=8, c=384, hw=(14, 14), groups=384, k=7, expand=4, act="gelu"))
       for dt in ("float32", "float16")},
    **{f"mbconv_{dt}": ("mbconv_block", dt,
                        dict(n=2, c=16, hw=(4, 4), k=3, expand=4, act1="hardtanh", act1_args=[0.0, 6.0],
                             act2="hardtanh", act2_args=[0.0, 6.0])) for dt in ("float32", "float16")},
    **{f"mlp_layer_gelu_{dt}": ("mlp_block", dt, dict(shape=(5, 24), hidden=64, norm="layer", act="gelu"))
       for dt in ("float32", "float16")},
    **{f"mlp_rms_silu_gate_d1024_{dt}": ("mlp_block", dt,
                                         dict(shape=(64, 1024), hidden=4096, norm="rms", act="silu", gate=True))
       for dt in ("float32", "float16")},
    "mlp_acts_bf16": ("mlp_block", "bfloat16", dict(shape=(5, 24), hidden=64, norm="none", act="tanh")),
    "mbconv_acts_bf16": ("mbconv_block", "bfloat16",
                         dict(n=1, c=8, hw=(3, 3), k=3, expand=2, act1="gelu-tanh", act1_args=[],
                              act2="hardswish", act2_args=[])),
}


def build(op, dtype, opts, device="cpu", seed=0):
    """(x, params) of a problem: values drawn in float32 on the CPU, then moved/rounded."""
    import torch
    generator = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=generator) * scale

    bias = opts.get("bias", True)

    def b(n):
        return r(n, scale=0.1) if bias else None

    if op == "mlp_block":
        d, hid = opts["shape"][-1], opts["hidden"]
        x = r(*opts["shape"])
        affine = opts.get("affine", True)
        norm = opts["norm"]
        norm_w = (1.0 + r(d, scale=0.2)) if norm != "none" and affine else None
        norm_b = r(d, scale=0.1) if norm == "layer" and affine else None
        gate = opts.get("gate", False)
        params = [norm, norm_w, norm_b, 1e-5, r(hid, d, scale=d ** -0.5), b(hid),
                  r(hid, d, scale=d ** -0.5) if gate else None, b(hid) if gate else None,
                  opts["act"], _act_args(opts["act"]), r(d, hid, scale=hid ** -0.5), b(d)]
    elif op in ("convfirst_block", "convnext_block"):
        c, groups, k, hid = opts["c"], opts["groups"], opts["k"], opts["c"] * opts["expand"]
        x = r(opts["n"], c, *opts["hw"])
        fan = c // groups * k * k
        params = [r(c, c // groups, k, k, scale=fan ** -0.5), b(c), groups, r(hid, c, 1, 1, scale=c ** -0.5), b(hid),
                  opts["act"], _act_args(opts["act"]), r(c, hid, 1, 1, scale=hid ** -0.5), b(c)]
        if op == "convnext_block":
            params.insert(3, opts.get("eps", 1e-6))
    else:
        c, k, hid = opts["c"], opts["k"], opts["c"] * opts["expand"]
        x = r(opts["n"], c, *opts["hw"])
        params = [r(hid, c, 1, 1, scale=c ** -0.5), b(hid), opts["act1"], opts["act1_args"],
                  r(hid, 1, k, k, scale=1.0 / k), b(hid), opts["act2"], opts["act2_args"],
                  r(c, hid, 1, 1, scale=hid ** -0.5), b(c)]
    dt = getattr(torch, dtype)

    def move(t):
        if not isinstance(t, torch.Tensor):
            return t
        return torch.empty(t.shape, dtype=dt, device="meta") if device == "meta" else t.to(device, dt)

    return move(x), [move(p) for p in params]


def run_case(name):
    import torch

    from fastc.kernels import blocks
    from fastc.kernels.block_triton import triton_block
    op, dtype, opts, config = CASES[name]
    x, params = build(op, dtype, opts, seed=sum(map(ord, name)))
    reference = getattr(blocks, f"{op}_reference")
    y = triton_block(op, x, *params, config=config)
    same = reference(x, *params).float()

    def up(t):
        return t.float() if isinstance(t, torch.Tensor) else t

    exact = reference(up(x), *map(up, params))
    return {"dtype": str(y.dtype), "shape": list(y.shape), "x_shape": list(x.shape),
            "scale": float(exact.abs().max()),
            "err_reference": float((y.float() - same).abs().max()),
            "err_fp32": float((y.float() - exact).abs().max()),
            "finite": bool(torch.isfinite(y).all())}


def interpret(out_path):
    import triton
    if not triton.knobs.runtime.interpret:
        raise SystemExit("block_triton_cases.py interpret needs TRITON_INTERPRET=1 in its environment")
    import torch
    torch.set_num_threads(1)
    results = {name: run_case(name) for name in CASES}
    with open(out_path, "w") as handle:
        json.dump(results, handle, indent=1)


def offline(out_path):
    import triton
    if triton.knobs.runtime.interpret:
        raise SystemExit("block_triton_cases.py offline needs TRITON_INTERPRET unset")
    from fastc.kernels.block_triton import BlockUnsupported, compile_offline, triton_block
    results = {}
    for name, (op, dtype, opts) in OFFLINE.items():
        x, params = build(op, dtype, opts, device="meta")
        try:
            compiled = compile_offline(op, x, *params, arch=90)
            shared = int(compiled.metadata.shared)
            results[name] = "ok" if "cubin" in compiled.asm and shared <= 227 * 1024 else \
                f"no cubin or too much shared memory ({shared} bytes)"
        except Exception as e:  # noqa: BLE001 - reported per case
            results[name] = f"{type(e).__name__}: {e}"[:2000]
    op, dtype, opts, _ = CASES["mlp_none_relu_d24"]
    x, params = build(op, dtype, opts)
    try:
        triton_block(op, x, *params)
        results["cpu_refused"] = "launched"
    except BlockUnsupported as e:
        results["cpu_refused"] = str(e)
    with open(out_path, "w") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    {"interpret": interpret, "offline": offline}[sys.argv[1]](sys.argv[2])
