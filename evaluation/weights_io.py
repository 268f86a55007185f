"""Reading and writing reference weights: safetensors (never pickle) plus a JSON sidecar.

Floating-point tensors are stored as fp16 to keep the committed files small and are cast back to
fp32 on load; integer buffers (BatchNorm's num_batches_tracked) are stored as they are. The metrics
in a sidecar are measured on the fp16-stored weights, so loading reproduces them.
"""
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_DIR = Path(__file__).parent / "weights"


def weights_path(name: str, folder: Path = WEIGHTS_DIR) -> Path:
    return Path(folder) / f"{name}.safetensors"


def sidecar_path(name: str, folder: Path = WEIGHTS_DIR) -> Path:
    return Path(folder) / f"{name}.json"


def storage_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's persistent state as it is stored: floats in fp16, contiguous, detached."""
    return {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().clone()
            for k, v in model.state_dict().items()}


def save(model: nn.Module, name: str, record: dict, folder: Path = WEIGHTS_DIR) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = weights_path(name, folder)
    save_file(storage_state(model), str(path), metadata={"model": name, "format": "fastc-reference-v1"})
    sidecar_path(name, folder).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def load_state(name: str, folder: Path = WEIGHTS_DIR) -> dict[str, torch.Tensor]:
    path = weights_path(name, folder)
    if not path.exists():
        raise FileNotFoundError(f"no weights for reference model '{name}' at {path}; "
                                f"reproduce them with: python -m fastc_eval.train {name}")
    return {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}


def load_record(name: str, folder: Path = WEIGHTS_DIR) -> dict | None:
    path = sidecar_path(name, folder)
    return json.loads(path.read_text()) if path.exists() else None
