"""Packed BCQ storage: bit packing, scales, safetensors round trips, sizes."""
import pytest
import torch

from fastc.kernels.bcq import (BCQWeight, bcq_quantize, dequantize, load_packed, pack,
                               save_packed, unpack)


def _weight(out_features=24, in_features=64, bits=3, group_size=32, seed=0):
    w = torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(seed))
    return bcq_quantize(w, bits, group_size, rounds=2)


@pytest.mark.parametrize("bits,in_features,group_size", [(1, 32, 32), (2, 64, 16), (3, 96, 32),
                                                          (4, 256, 128), (2, 48, 16), (3, 40, 8)])
def test_pack_unpack_round_trip(bits, in_features, group_size):
    q = _weight(in_features=in_features, bits=bits, group_size=group_size)
    packed = pack(q, scale_dtype=torch.float32)
    assert packed.bits.dtype == torch.int32
    assert packed.bits.shape == (bits, -(-in_features // 32), 24)
    back = unpack(packed)
    assert torch.equal(back.codes, q.codes)
    assert torch.equal(back.scales, q.scales)
    torch.testing.assert_close(dequantize(packed), q.dequantize(), rtol=0, atol=0)


def test_every_bit_position_including_the_sign_bit():
    codes = -torch.ones(1, 3, 32, dtype=torch.int8)
    codes[0, 0] = 1                      # all ones -> word -1
    codes[0, 1, 31] = 1                  # only bit 31 -> most negative int32
    codes[0, 2, 0] = 1                   # only bit 0 -> 1
    packed = pack(BCQWeight(codes, torch.ones(1, 3, 1), 32), scale_dtype=torch.float32)
    assert packed.bits[0, 0].tolist() == [-1, -2 ** 31, 1]
    assert torch.equal(unpack(packed).codes, codes)


def test_fp16_scales_round_to_nearest_half():
    q = _weight()
    back = unpack(pack(q, scale_dtype=torch.float16))
    assert torch.equal(back.scales, q.scales.half().float())


def test_safetensors_round_trip(tmp_path):
    layers = {"q_proj": pack(_weight(seed=1)),
              "up": pack(bcq_quantize(torch.randn(16, 64), 2, 32, pow2_terms=2))}
    path = tmp_path / "bcq.safetensors"
    save_packed(path, layers)
    loaded = load_packed(path)
    assert sorted(loaded) == ["q_proj", "up"]
    for name, packed in layers.items():
        got = loaded[name]
        assert torch.equal(got.bits, packed.bits) and torch.equal(got.scales, packed.scales)
        assert (got.out_features, got.in_features, got.group_size, got.pow2_terms) == \
            (packed.out_features, packed.in_features, packed.group_size, packed.pow2_terms)
    single = tmp_path / "one.safetensors"
    save_packed(single, layers["up"])
    assert torch.equal(dequantize(load_packed(single)["weight"]), dequantize(layers["up"]))


def test_loading_a_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ValueError, match="not a packed BCQ file"):
        load_packed(path)


def test_packed_bytes_against_fp16():
    q = bcq_quantize(torch.randn(256, 512), 3, 128, rounds=1)
    packed = pack(q)
    bit_bytes = 3 * 256 * 512 // 8
    scale_bytes = 3 * 256 * (512 // 128) * 2
    assert packed.nbytes() == bit_bytes + scale_bytes
    assert packed.fp16_nbytes() == 256 * 512 * 2
    # 3 bits per weight plus 3 fp16 scales per 128 weights: 3.375 bits against 16.
    assert packed.nbytes() / packed.fp16_nbytes() == pytest.approx(3.375 / 16)
