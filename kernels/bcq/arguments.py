"""Argument checks shared by the quantizer entry points.

Each check raises a ValueError that names the argument, the value it got and what is valid.
"""
import torch


def check_weight(weight) -> None:
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out_features x in_features), got shape "
                         f"{tuple(weight.shape)}")
    if not weight.is_floating_point():
        raise ValueError(f"weight must be a floating-point tensor, got dtype {weight.dtype}")
    if weight.numel() == 0:
        raise ValueError(f"weight must not be empty, got shape {tuple(weight.shape)}")
    if not bool(torch.isfinite(weight).all()):
        bad = "NaN" if bool(torch.isnan(weight).any()) else "inf"
        raise ValueError(f"weight contains {bad}; every entry must be finite")


def check_bits(bits) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an int in 1..8, got {bits!r}")


def check_group_size(group_size, in_features: int) -> None:
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if in_features % group_size != 0:
        raise ValueError(f"group_size={group_size} does not divide in_features={in_features}; "
                         f"valid group sizes divide {in_features} (e.g. "
                         f"{', '.join(str(d) for d in _divisors(in_features)[-4:])})")


def check_rounds(rounds) -> None:
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 0:
        raise ValueError(f"rounds must be an int >= 0, got {rounds!r}")


def check_pow2_terms(pow2_terms) -> None:
    if pow2_terms is None:
        return
    if not isinstance(pow2_terms, int) or isinstance(pow2_terms, bool) or not 1 <= pow2_terms <= 8:
        raise ValueError(f"pow2_terms must be None (free scales) or an int in 1..8, "
                         f"got {pow2_terms!r}")


def check_hessian(hessian, in_features: int) -> None:
    if not isinstance(hessian, torch.Tensor):
        raise ValueError(f"hessian must be a torch.Tensor (X^T X), got {type(hessian).__name__}")
    if tuple(hessian.shape) != (in_features, in_features):
        raise ValueError(f"hessian must have shape ({in_features}, {in_features}) to match "
                         f"in_features, got {tuple(hessian.shape)}")
    if not bool(torch.isfinite(hessian).all()):
        raise ValueError("hessian contains NaN or inf; every entry must be finite")


def check_damp(damp) -> None:
    if not isinstance(damp, (int, float)) or isinstance(damp, bool) or not damp > 0:
        raise ValueError(f"damp must be a float > 0 (fraction of mean diag(H)), got {damp!r}")


def _divisors(n: int) -> list:
    return [d for d in range(1, n + 1) if n % d == 0]
