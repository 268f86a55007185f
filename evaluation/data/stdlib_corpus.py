"""The character corpus: the Python standard library's own top-level .py sources.

Files are the sorted `*.py` directly in `sysconfig.get_paths()["stdlib"]` (no subpackages, no
site-packages). A file is held out for validation when crc32 of its name is 0 mod 10, so the split
depends on the file's name only, not on which other files a given Python build ships. Text maps to
a fixed vocabulary: tab, newline and printable ASCII, with every other character as UNK.
"""
import hashlib
import sysconfig
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

VOCAB = "\t\n" + "".join(chr(c) for c in range(32, 127))
UNK = len(VOCAB)
VOCAB_SIZE = len(VOCAB) + 1
HOLDOUT_MODULUS = 10


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_files(root: Path | None = None) -> list[Path]:
    """The corpus files, sorted by name."""
    root = stdlib_dir() if root is None else root
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no .py files in the stdlib folder {root}")
    return files


def is_held_out(path: Path) -> bool:
    return zlib.crc32(path.name.encode()) % HOLDOUT_MODULUS == 0


def encode(text: str) -> torch.Tensor:
    """Token ids (int64) of text; characters outside VOCAB become UNK."""
    table = np.full(128, UNK, dtype=np.int64)
    for i, ch in enumerate(VOCAB):
        table[ord(ch)] = i
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    ids = np.where(codes < 128, table[np.minimum(codes, 127)], UNK)
    return torch.from_numpy(ids)


def decode(tokens) -> str:
    return "".join(VOCAB[t] if t < UNK else "\ufffd" for t in tokens)


@dataclass(frozen=True)
class CorpusSplit:
    train_files: tuple[str, ...]
    val_files: tuple[str, ...]
    train_text: str
    val_text: str

    def fingerprint(self) -> str:
        """sha256 (first 16 hex digits) of both texts, to tell whether two machines saw the same data."""
        h = hashlib.sha256()
        for text in (self.train_text, "\0", self.val_text):
            h.update(text.encode("utf-8", "replace"))
        return h.hexdigest()[:16]


def load_split(root: Path | None = None) -> CorpusSplit:
    """Train and validation texts; each is its files' contents joined in sorted order."""
    train, val = [], []
    for path in corpus_files(root):
        (val if is_held_out(path) else train).append(path)
    read = lambda paths: "".join(p.read_text(encoding="utf-8", errors="replace") for p in paths)
    return CorpusSplit(tuple(p.name for p in train), tuple(p.name for p in val), read(train), read(val))


def eval_windows(tokens: torch.Tensor, context: int, max_chars: int) -> torch.Tensor:
    """Non-overlapping windows (n, context + 1) covering the first max_chars predicted characters.

    Window i holds tokens[i*context : i*context + context + 1]: the model reads the first `context`
    and predicts the last `context`, so every character after the first is predicted exactly once.
    """
    n = min((len(tokens) - 1) // context, max(1, max_chars // context))
    idx = torch.arange(n)[:, None] * context + torch.arange(context + 1)[None, :]
    return tokens[idx]


def random_windows(tokens: torch.Tensor, context: int, batch: int, gen: torch.Generator) -> torch.Tensor:
    """A batch (batch, context + 1) of windows at random offsets, drawn with the given generator."""
    starts = torch.randint(0, len(tokens) - context - 1, (batch,), generator=gen)
    return tokens[starts[:, None] + torch.arange(context + 1)[None, :]]
