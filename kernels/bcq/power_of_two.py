"""Power-of-two scales: each scale becomes a sum of at most `terms` signed powers of two.

With such scales, multiplying an activation sum by a scale is a handful of shifts and adds,
which is what makes the shift-add form multiplication-free.
"""
import torch

# fp16 can hold 2^-24 .. 2^15 exactly; scales are kept inside that range so that storing them
# as fp16 loses nothing.
MIN_EXPONENT = -24
MAX_EXPONENT = 15
# Terms after the first stay within fp16's 10 fraction bits of the first term, so that every
# scale is exactly representable in fp16 (the packed default).
FP16_FRACTION_BITS = 10


def nearest_power_of_two(magnitude: torch.Tensor) -> torch.Tensor:
    """The power of two nearest (in linear distance) to each positive entry; 0 stays 0."""
    positive = magnitude > 0
    safe = torch.where(positive, magnitude, torch.ones_like(magnitude))
    exponent = torch.floor(torch.log2(safe)).clamp(MIN_EXPONENT, MAX_EXPONENT - 1)
    low = torch.exp2(exponent)
    high = 2.0 * low
    nearest = torch.where(safe - low <= high - safe, low, high)
    too_small = magnitude < 2.0 ** (MIN_EXPONENT - 1)
    return torch.where(positive & ~too_small, nearest, torch.zeros_like(magnitude))


def to_power_of_two_terms(scales: torch.Tensor, terms: int) -> torch.Tensor:
    """Greedy: each term is the signed power of two nearest to what is left of the scale.

    Later terms smaller than 2^-FP16_FRACTION_BITS of the first are dropped (fp16-exact result).
    """
    first = nearest_power_of_two(scales.abs())
    approx = torch.sign(scales) * first
    for _ in range(terms - 1):
        left = scales - approx
        power = nearest_power_of_two(left.abs())
        power = torch.where(power >= first * 2.0 ** -FP16_FRACTION_BITS, power, 0.0)
        approx = approx + torch.sign(left) * power
    return approx


def power_of_two_terms(scales: torch.Tensor, terms: int) -> list:
    """Decompose scales produced by `to_power_of_two_terms` into their signed exponents.

    Returns a list of `terms` pairs (sign, exponent) of tensors shaped like `scales`; sign is 0
    where a term is unused. Used to show (and check) that a scale really is a few shifts.
    """
    pairs, left = [], scales.clone()
    for _ in range(terms):
        power = nearest_power_of_two(left.abs())
        sign = torch.sign(left) * (power > 0)
        exponent = torch.where(power > 0, torch.log2(torch.where(power > 0, power, 1.0)), 0.0)
        pairs.append((sign, exponent.round().to(torch.int32)))
        left = left - sign * power
    return pairs
