"""Self-speculative decoding (fastc_eval.speculative) on the trained char LM: the output is the
full model's greedy output token for token, whatever the draft; the statistics add up."""
import pytest
import torch

from fastc_eval import zoo
from fastc_eval.speculative import (Padded, SkippedBlock, fastc_draft, greedy_generate, skipped_copy,
                                    speculative_generate)

NEW = 32


@pytest.fixture(scope="module")
def model():
    return zoo.load("char-lm").eval()


@pytest.fixture(scope="module")
def prompt():
    return zoo.corpus_tokens()[1][1000:1016]


@pytest.fixture(scope="module")
def greedy(model, prompt):
    return greedy_generate(model, prompt, NEW)[0]


def check_stats(stats, draft_len):
    assert stats.new_tokens == NEW
    assert 0.0 <= stats.acceptance_rate <= 1.0
    assert 0 <= stats.accepted <= stats.drafted == stats.draft_calls
    assert stats.rounds == stats.full_calls == len(stats.accepted_per_round)
    assert all(0 <= a <= draft_len for a in stats.accepted_per_round)
    # every round keeps its accepted proposals and one token of the full model
    assert stats.accepted + stats.rounds == NEW
    assert stats.full_rows >= stats.full_calls
    assert stats.wall_s > 0


@pytest.mark.parametrize("blocks", [[1], [1, 3]], ids=["skip1", "skip2"])
@pytest.mark.parametrize("draft_len", [1, 4])
def test_output_is_full_greedy(model, prompt, greedy, blocks, draft_len):
    draft = skipped_copy(model, blocks)
    tokens, stats = speculative_generate(model, draft, prompt, NEW, draft_len)
    assert torch.equal(tokens, greedy)
    check_stats(stats, draft_len)
    assert stats.acceptance_rate < 1.0  # a lossy draft disagrees somewhere on this prompt


def test_full_model_as_draft_accepts_everything(model, prompt, greedy):
    tokens, stats = speculative_generate(model, model, prompt, NEW, 4)
    assert torch.equal(tokens, greedy)
    check_stats(stats, 4)
    assert stats.acceptance_rate == 1.0 and stats.accepted == stats.drafted
    assert stats.full_calls == -(-NEW // 5)  # 4 accepted + 1 of the full model's per round


def test_past_the_context_window(model):
    """A prompt longer than the context: windows are cropped per prediction, several rows per
    verify call, and the output still equals plain greedy decoding."""
    prompt = zoo.corpus_tokens()[1][:model.cfg.context + 20]
    greedy = greedy_generate(model, prompt, 12)[0]
    tokens, stats = speculative_generate(model, skipped_copy(model, [1]), prompt, 12, 4)
    assert torch.equal(tokens, greedy)
    assert stats.full_rows > stats.full_calls


def test_wild_draft_is_still_exact(model, prompt, greedy):
    """A draft that is always wrong costs speed only."""
    def wrong(tokens):
        logits = torch.zeros(*tokens.shape, model.cfg.vocab_size)
        logits[..., 0] = 1.0  # always token 0, which the text never has here
        return logits
    tokens, stats = speculative_generate(model, wrong, prompt, NEW, 3)
    assert torch.equal(tokens, greedy)
    assert stats.accepted == 0 and stats.acceptance_rate == 0.0


def test_skipped_copy_and_padding(model, prompt):
    draft = skipped_copy(model, ["blocks.2", "blocks.4 (Block): influence 0.08"])
    assert isinstance(draft.blocks[2], SkippedBlock) and isinstance(draft.blocks[4], SkippedBlock)
    assert not isinstance(model.blocks[2], SkippedBlock)  # a copy: the model is untouched
    with pytest.raises(ValueError, match="no submodule"):
        skipped_copy(model, ["blocks.9"])
    x = prompt[None]
    with torch.no_grad():  # right padding is exact for the causal LM
        torch.testing.assert_close(Padded(model, model.cfg.context, batches=(1, 5))(x), model(x))


def test_fastc_draft_static_shapes(model, prompt, greedy):
    """fastc's layer-skip picks the block; the draft is static-shape behind Padded."""
    d = fastc_draft(model, skip=1)
    assert len(d.skipped) == 1 and d.skipped[0].startswith("blocks.") and not d.dynamic
    tokens, stats = speculative_generate(model, d.model, prompt, NEW, 4)
    assert torch.equal(tokens, greedy)
    eager_tokens, eager_stats = speculative_generate(model, d.eager(model), prompt, NEW, 4)
    assert torch.equal(eager_tokens, greedy)
    # the compiled draft proposes what the eager copy with the same block skipped proposes
    assert stats.accepted_per_round == eager_stats.accepted_per_round


@pytest.mark.slow
def test_fastc_draft_dynamic_shapes(model, prompt, greedy):
    """dynamic=True: one graph for every length (fastc builds code per new length on its first
    call, about half a second each here, hence slow)."""
    d = fastc_draft(model, skip=2, dynamic=True)
    assert len(d.skipped) == 2 and d.dynamic
    tokens, stats = speculative_generate(model, d.model, prompt, 8, 4)
    assert torch.equal(tokens, greedy[:len(prompt) + 8])
