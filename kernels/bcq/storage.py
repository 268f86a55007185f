"""Save and load packed BCQ weights as safetensors (tensors plus JSON metadata, no pickle)."""
import json
from typing import Dict, Union

import torch
from safetensors.torch import load_file, save_file

from .packing import PackedBCQ

FORMAT = "fastc-bcq-v1"


def save_packed(path, layers: Union[PackedBCQ, Dict[str, PackedBCQ]]) -> None:
    """Write one packed weight (stored under the name "weight") or a dict name -> packed."""
    if isinstance(layers, PackedBCQ):
        layers = {"weight": layers}
    tensors, meta = {}, {}
    for name, packed in layers.items():
        if "." in name:
            raise ValueError(f"layer name {name!r} must not contain '.'; use e.g. '_' instead")
        tensors[f"{name}.bits"] = packed.bits.detach().cpu().contiguous()
        tensors[f"{name}.scales"] = packed.scales.detach().cpu().contiguous()
        meta[name] = {"out_features": packed.out_features, "in_features": packed.in_features,
                      "group_size": packed.group_size, "pow2_terms": packed.pow2_terms}
    save_file(tensors, str(path), metadata={"format": FORMAT, "layers": json.dumps(meta)})


def load_packed(path) -> Dict[str, PackedBCQ]:
    """Read what save_packed wrote: a dict name -> PackedBCQ (on the CPU)."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a packed BCQ file: metadata format is "
                         f"{metadata.get('format')!r}, expected {FORMAT!r}")
    tensors = load_file(str(path))
    layers = {}
    for name, info in json.loads(metadata["layers"]).items():
        packed = PackedBCQ(tensors[f"{name}.bits"], tensors[f"{name}.scales"], **info)
        _check_shapes(name, packed)
        layers[name] = packed
    return layers


def _check_shapes(name: str, packed: PackedBCQ) -> None:
    words = -(-packed.in_features // 32)
    groups = packed.in_features // packed.group_size
    bits = packed.num_bits
    if packed.bits.dtype != torch.int32 or tuple(packed.bits.shape) != (bits, words,
                                                                         packed.out_features):
        raise ValueError(f"layer {name!r}: bits tensor {tuple(packed.bits.shape)} "
                         f"{packed.bits.dtype} does not match int32 ({bits}, {words}, "
                         f"{packed.out_features})")
    if tuple(packed.scales.shape) != (bits, groups, packed.out_features):
        raise ValueError(f"layer {name!r}: scales tensor {tuple(packed.scales.shape)} does not "
                         f"match ({bits}, {groups}, {packed.out_features})")
