"""Self-speculative greedy decoding: a model with blocks skipped drafts, the full model verifies.

    draft = skipped_copy(model, ["blocks.1"])                    # eager: blocks replaced by identity
    tokens, stats = speculative_generate(model, draft, prompt, 200, draft_len=4)
    plain, _ = greedy_generate(model, prompt, 200)               # tokens == plain, always

    d = fastc_draft(model, skip=2)                               # fastc's layer-skip picks the blocks
    tokens, stats = speculative_generate(model, d.model, prompt, 200)

How a round goes (the idea of self-speculative decoding: Draft & Verify, LayerSkip, SWIFT): the
draft proposes `draft_len` tokens one at a time, greedily; the full model then computes, in one
call, its own greedy token after every prefix of the proposal (k + 1 of them for k proposals).
The longest prefix of the proposal that agrees with the full model is kept, followed by the full
model's token at the first disagreement (or after the last proposal when all agree). Every token
kept is the full model's greedy token for the sequence before it, so the output is exactly the
full model's greedy output, whatever the draft does; a good draft only makes it cheaper (fewer
full-model calls per token).

Context window: the char LM takes at most `context` tokens (its rotary tables have that many
rows), and plain greedy decoding feeds it the last `context` tokens. Verification reproduces that
exactly: the prediction after a prefix of length m uses the window ending at m. While the whole
extended sequence fits in the context, all windows start at 0 and one row serves them all (a
causal model's logits at position i depend only on tokens <= i); past that, each prediction has
its own window, and the full model's one call is a batch of up to k + 1 rows.

No KV cache: the models here have none, so every call (draft or full) recomputes its whole window.
A round costs k draft calls and one full call of up to k + 1 rows; plain greedy costs one full
call of one row per token. The speed-up therefore needs a draft much cheaper than the full model
and a high acceptance rate; bench/speculative_decoding.py measures what it is on the char LM.

Shapes: every call's sequence length varies (it grows with the text until it reaches the
context) and the verify batch varies. Eager models do not care. A fastc-compiled model either is
compiled with dynamic=True (fastc_draft(dynamic=True)), or is wrapped in `Padded`, which
right-pads every row to the context length (and optionally the batch to fixed sizes) so that
static shapes suffice. Right padding is exact for a causal model (positions after i do not reach
position i's logits and the rotary positions of the real tokens do not move); left padding would
not be (the char LM has no attention mask and its rotary positions start at 0).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

Model = Callable[[torch.Tensor], torch.Tensor]   # (batch, seq) int64 -> (batch, seq, vocab)


# -- statistics ----------------------------------------------------------------------------------
@dataclass
class DecodeStats:
    new_tokens: int = 0      # tokens generated (not counting the prompt)
    drafted: int = 0         # tokens the draft proposed
    accepted: int = 0        # proposals the full model agreed with (kept)
    full_calls: int = 0      # calls of the full model (each one verifies a whole round)
    full_rows: int = 0       # rows those calls ran (one per distinct context window)
    draft_calls: int = 0     # calls of the draft model (one per proposed token)
    rounds: int = 0          # draft-then-verify rounds
    wall_s: float = 0.0      # wall-clock time of the whole generation
    accepted_per_round: list[int] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        """Accepted proposals over drafted ones, in [0, 1] (1.0 when nothing was drafted)."""
        return self.accepted / self.drafted if self.drafted else 1.0

    @property
    def tokens_per_full_call(self) -> float:
        return self.new_tokens / self.full_calls if self.full_calls else 0.0

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("accepted_per_round")
        out["acceptance_rate"] = self.acceptance_rate
        out["tokens_per_full_call"] = self.tokens_per_full_call
        return out


# -- decoding -------------------------------------------------------------------------------------
def context_of(model, default: int | None = None) -> int:
    """The model's context length: model.cfg.context, through torch.compile's and Padded's
    wrappers; else `default`, else the char LM's."""
    seen = set()
    while model is not None and id(model) not in seen:
        seen.add(id(model))
        cfg = getattr(model, "cfg", None)
        if cfg is not None and hasattr(cfg, "context"):
            return int(cfg.context)
        model = getattr(model, "_orig_mod", None) or getattr(model, "inner", None)
    if default is not None:
        return default
    from .models.char_lm import CharLMConfig
    return CharLMConfig.context


def _as_list(prompt_tokens) -> list[int]:
    if isinstance(prompt_tokens, torch.Tensor):
        if prompt_tokens.dim() == 2:
            if prompt_tokens.shape[0] != 1:
                raise ValueError(f"prompt_tokens: batch of {prompt_tokens.shape[0]}; one sequence is decoded at a time")
            prompt_tokens = prompt_tokens[0]
        if prompt_tokens.dim() != 1:
            raise ValueError(f"prompt_tokens: expected 1-D token ids, got shape {list(prompt_tokens.shape)}")
        prompt_tokens = prompt_tokens.tolist()
    tokens = [int(t) for t in prompt_tokens]
    if not tokens:
        raise ValueError("prompt_tokens: empty prompt (the model needs at least one token)")
    return tokens


def _next_token(model: Model, seq: list[int], context: int) -> int:
    window = torch.tensor([seq[-context:]], dtype=torch.long)
    return int(model(window)[0, -1].argmax())


def _full_predictions(model: Model, seq: list[int], n: int, k: int, context: int, stats: DecodeStats) -> list[int]:
    """The full model's greedy token after each prefix seq[:n + j], j = 0..k, in one call: the
    prediction after m tokens uses the window seq[max(0, m - context):m], as plain greedy does.
    Windows with the same start share a row (a causal model's position i sees tokens <= i)."""
    ends = [n + j for j in range(k + 1)]
    starts = [max(0, m - context) for m in ends]
    rows: dict[int, int] = {}                       # start -> end of the longest window with it
    for s, m in zip(starts, ends):
        rows[s] = max(rows.get(s, 0), m)
    order = list(rows)
    length = max(rows[s] - s for s in order)
    batch = torch.zeros(len(order), length, dtype=torch.long)
    for r, s in enumerate(order):
        batch[r, :rows[s] - s] = torch.tensor(seq[s:rows[s]])
    # rows shorter than the longest are right-padded: exact for a causal model (see the docstring)
    logits = model(batch)
    stats.full_calls += 1
    stats.full_rows += len(order)
    index = {s: r for r, s in enumerate(order)}
    return [int(logits[index[s], m - s - 1].argmax()) for s, m in zip(starts, ends)]


@torch.no_grad()
def greedy_generate(full: Model, prompt_tokens, max_new_tokens: int, *,
                    context: int | None = None) -> tuple[torch.Tensor, DecodeStats]:
    """Plain greedy decoding with the full model: one call per token on the last `context`
    tokens. Returns (prompt + new tokens as a 1-D int64 tensor, stats)."""
    seq = _as_list(prompt_tokens)
    context = context or context_of(full)
    stats = DecodeStats()
    start = time.perf_counter()
    for _ in range(max_new_tokens):
        seq.append(_next_token(full, seq, context))
        stats.full_calls += 1
        stats.full_rows += 1
    stats.new_tokens = max_new_tokens
    stats.wall_s = time.perf_counter() - start
    return torch.tensor(seq, dtype=torch.long), stats


@torch.no_grad()
def speculative_generate(full: Model, draft: Model, prompt_tokens, max_new_tokens: int, draft_len: int = 4, *,
                         context: int | None = None) -> tuple[torch.Tensor, DecodeStats]:
    """Greedy decoding of `full`, drafted by `draft` (see the module docstring). Both take
    (batch, seq) token ids and return (batch, seq, vocab) logits; `full` may be called with
    several rows in one call (one per context window the round's predictions need).

    Returns (prompt + new tokens as a 1-D int64 tensor, stats); the tokens equal
    greedy_generate(full, ...)'s exactly. `context`: the longest window either model takes
    (default: full's cfg.context, else the char LM's)."""
    if draft_len < 0:
        raise ValueError(f"draft_len={draft_len}: expected a number >= 0")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens}: expected a number >= 0")
    seq = _as_list(prompt_tokens)
    context = context or context_of(full)
    stats = DecodeStats()
    start = time.perf_counter()
    target = len(seq) + max_new_tokens
    while len(seq) < target:
        n = len(seq)
        # the full model's call always adds one token of its own: draft at most what is left - 1
        k = min(draft_len, target - n - 1)
        for _ in range(k):
            seq.append(_next_token(draft, seq, context))
        stats.draft_calls += k
        stats.drafted += k
        proposal = seq[n:]
        truth = _full_predictions(full, seq, n, k, context, stats)
        accepted = 0
        while accepted < k and proposal[accepted] == truth[accepted]:
            accepted += 1
        del seq[n:]
        seq.extend(truth[:accepted + 1])            # the agreed proposals, then full's own token
        stats.accepted += accepted
        stats.accepted_per_round.append(accepted)
        stats.rounds += 1
    stats.new_tokens = max_new_tokens
    stats.wall_s = time.perf_counter() - start
    return torch.tensor(seq, dtype=torch.long), stats


# -- drafts ---------------------------------------------------------------------------------------
class SkippedBlock(nn.Module):
    """A residual block replaced by identity: returns its first input (the residual stream);
    the char LM's blocks also take the rotary tables, which it ignores."""

    def __init__(self, name: str = ""):
        super().__init__()
        self.name = name

    def forward(self, x, *rest, **kwargs):
        return x

    def extra_repr(self) -> str:
        return f"skipped {self.name}" if self.name else "skipped"


def block_name(entry) -> str:
    """'blocks.1' from an int (a char LM block index), a name, or a layer-skip record line
    ('blocks.1 (Block): influence 0.06961')."""
    if isinstance(entry, int):
        return f"blocks.{entry}"
    return str(entry).split(" ")[0]


def skipped_copy(model: nn.Module, block_names: Sequence) -> nn.Module:
    """A deep copy of `model` (eval mode) with the named submodules (`blocks.1`, or a block index
    of the char LM, or a layer-skip record line) replaced by identity: the eager draft model,
    which computes what fastc's layer-skip graph computes."""
    out = copy.deepcopy(model).eval()
    for entry in block_names:
        name = block_name(entry)
        parent_name, _, child = name.rpartition(".")
        try:
            parent = out.get_submodule(parent_name) if parent_name else out
            out.get_submodule(name)
        except AttributeError:
            raise ValueError(f"skipped_copy: {type(model).__name__} has no submodule {name!r}") from None
        if isinstance(parent, (nn.ModuleList, nn.Sequential)) and child.isdigit():
            parent[int(child)] = SkippedBlock(name)
        else:
            setattr(parent, child, SkippedBlock(name))
    return out


class Padded(nn.Module):
    """Calls `inner` on inputs right-padded to `length` tokens (and, with `batches`, to the
    smallest of those batch sizes that holds the rows), returning the logits of the real rows
    and positions. With it a static-shape compiled model sees one or a few shapes while the text
    grows. Exact for causal models (see the module docstring)."""

    def __init__(self, inner: Model, length: int, batches: Sequence[int] | None = None, pad_token: int = 0):
        super().__init__()
        self.inner, self.length, self.pad_token = inner, length, pad_token
        self.batches = sorted(batches) if batches else None

    @property
    def cfg(self):
        return getattr(self.inner, "cfg", None) or getattr(getattr(self.inner, "_orig_mod", None), "cfg", None)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, t = tokens.shape
        if t > self.length:
            raise ValueError(f"Padded: {t} tokens, more than the padded length {self.length}")
        rows = b
        if self.batches:
            fits = [s for s in self.batches if s >= b]
            rows = fits[0] if fits else b
        x = torch.full((rows, self.length), self.pad_token, dtype=tokens.dtype)
        x[:b, :t] = tokens
        return self.inner(x)[:b, :t]


class _SpecializedFloats(nn.Module):
    """Runs a torch.compile'd model with Dynamo's specialize_float on (see fastc_draft)."""

    def __init__(self, compiled):
        super().__init__()
        self.compiled = compiled

    @property
    def cfg(self):
        return getattr(getattr(self.compiled, "_orig_mod", None), "cfg", None)

    def forward(self, tokens):
        import torch._dynamo
        with torch._dynamo.config.patch(specialize_float=True):
            return self.compiled(tokens)


@dataclass
class FastcDraft:
    model: Model               # the draft: call it with (batch, seq) tokens
    skipped: list[str]         # the blocks fastc's layer-skip removed ("blocks.1"), least influential first
    record: object             # fastc's LossyRecord of the layer-skip pass
    dynamic: bool              # compiled with dynamic=True (else static shapes behind Padded)

    def eager(self, model: nn.Module) -> nn.Module:
        """The eager equivalent: `model` with the same blocks replaced by identity."""
        return skipped_copy(model, self.skipped)


def calibration_windows(model: nn.Module, n: int = 8, length: int | None = None) -> list[tuple[torch.Tensor]]:
    """n windows of `length` (default: the context) tokens from the char LM's training split,
    one per calibration tuple (the reference model's calibration set, as bench/layer_skip.py)."""
    from . import zoo
    windows = zoo.reference("char-lm").calibration(model, n)
    if length is not None:
        windows = windows[:, :length]
    return [(windows[i:i + 1],) for i in range(n)]


def fastc_draft(model: nn.Module, skip: int, *, dynamic: bool = False, calibration=None,
                options: dict | None = None) -> FastcDraft:
    """The draft built by fastc: a copy of `model` compiled with lossy="layer-skip{max_fraction}"
    so that `skip` blocks go (the least influential by Block Influence on the calibration
    windows; no accuracy budget: the draft's errors cost speed, never correctness).

    dynamic=True: torch.compile(dynamic=True), one graph for every sequence length. Dynamo then
    lifts the char LM's float module attributes (nn.Embedding's norm_type) into graph inputs,
    which fastc's calibration binder cannot bind from the model's inputs; the draft is compiled
    and called with torch._dynamo.config.specialize_float=True to avoid that.
    dynamic=False (default): static shapes; the draft is wrapped in Padded(context), so that it
    sees one shape, (1, context), whatever the length of the text.

    Compiles at once (one call on a calibration window) and reads fastc's record of what was
    removed."""
    import fastc  # noqa: F401  (registers the backend)
    import torch._dynamo

    n_blocks = len(model.blocks) if hasattr(model, "blocks") else None
    if n_blocks is not None and not 0 < skip <= n_blocks:
        raise ValueError(f"fastc_draft: skip={skip} of {n_blocks} blocks")
    fraction = (skip + 0.5) / n_blocks if n_blocks else skip  # floor(fraction * blocks) == skip
    calibration = calibration if calibration is not None else calibration_windows(model)
    opts = {"target": "cpu", "on_error": "raise", "lossy": f"layer-skip{{max_fraction={fraction:.4f}}}",
            "calibration": calibration, "accuracy_budget": None, **(options or {})}
    inner = _own_forward(copy.deepcopy(model).eval())
    before = len(fastc.reports())
    with torch.no_grad():
        if dynamic:
            with torch._dynamo.config.patch(specialize_float=True):
                compiled = torch.compile(inner, backend="fastc", dynamic=True, options=opts)
                draft: Model = _SpecializedFloats(compiled)
                draft(calibration[0][0])
        else:
            compiled = torch.compile(inner, backend="fastc", dynamic=False, options=opts)
            draft = Padded(compiled, context_of(model))
            draft(calibration[0][0])
    records = [lossy for r in fastc.reports()[before:] for lossy in (r.lossy or []) if lossy.name.startswith("layer-skip")]
    if not records:
        raise RuntimeError("fastc_draft: fastc compiled no layer-skip pass (see fastc.reports())")
    record = records[-1]
    # names relative to the user's model (the compiled copy sits in _own_forward's wrapper as .inner)
    names = [block_name(w).removeprefix("inner.") for w in record.rewritten]
    return FastcDraft(draft, names, record, dynamic)


def _own_forward(model: nn.Module) -> nn.Module:
    """The model inside a module whose forward is a code object of its own. Dynamo caches
    compiled frames per code object: two compiled copies of the char LM share CharLM.forward's
    cache (and its recompile limit), so a draft and a full model compiled in one process would
    evict or guard-check each other's graphs."""
    import types
    _own_forward.count = getattr(_own_forward, "count", 0) + 1

    def forward(self, tokens):
        return self.inner(tokens)
    code = forward.__code__.replace(co_name=f"forward_{_own_forward.count}")
    cls = type(f"Compiled{_own_forward.count}", (nn.Module,),
                {"forward": types.FunctionType(code, forward.__globals__),
                 "cfg": property(lambda self: getattr(self.inner, "cfg", None))})
    out = cls()
    out.inner = model
    return out


def compiled_full(model: nn.Module, *, dynamic: bool = False, batches: Sequence[int] | None = None,
                  options: dict | None = None) -> Model:
    """The full model compiled by fastc without lossy passes, for a like-for-like comparison
    with a fastc draft: dynamic=True, or static shapes behind Padded(context, batches) (give
    batches=(1, draft_len + 1) so that verification sees two shapes)."""
    import fastc  # noqa: F401
    opts = {"target": "cpu", "on_error": "raise", **(options or {})}
    compiled = torch.compile(_own_forward(copy.deepcopy(model).eval()), backend="fastc", dynamic=dynamic, options=opts)
    return compiled if dynamic else Padded(compiled, context_of(model), batches)
