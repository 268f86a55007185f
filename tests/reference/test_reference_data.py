"""The data splits are deterministic, disjoint, and calibration data never comes from validation."""
import numpy as np
import torch

from fastc_eval import zoo
from fastc_eval.data import digits, stdlib_corpus


def test_corpus_split_is_deterministic_and_disjoint():
    a, b = stdlib_corpus.load_split(), stdlib_corpus.load_split()
    assert a == b
    assert a.fingerprint() == b.fingerprint()
    assert len(a.val_files) >= 5 and len(a.train_files) >= 10 * len(a.val_files) // 2
    assert not set(a.train_files) & set(a.val_files)
    assert list(a.train_files) == sorted(a.train_files)
    # the split is a function of the file name alone
    assert all(stdlib_corpus.is_held_out(stdlib_corpus.stdlib_dir() / f) for f in a.val_files)


def test_held_out_files_are_not_in_training_text():
    split = stdlib_corpus.load_split()
    root = stdlib_corpus.stdlib_dir()
    for name in split.val_files:
        text = (root / name).read_text(encoding="utf-8", errors="replace")
        middle = len(text) // 2
        chunk = text[middle:middle + 300]
        assert len(chunk) == 300 and chunk in split.val_text
        assert chunk not in split.train_text, f"a piece of held-out {name} is in the training text"


def test_encoding_round_trips_ascii_and_maps_the_rest_to_unk():
    text = "def f(x):\n\treturn x ~ 1  # é"
    ids = stdlib_corpus.encode(text)
    assert ids.dtype == torch.long and len(ids) == len(text)
    assert int(ids.max()) < stdlib_corpus.VOCAB_SIZE
    assert ids[-1] == stdlib_corpus.UNK
    assert stdlib_corpus.decode(ids[:-1].tolist()) == text[:-1]


def test_eval_windows_predict_each_character_once():
    tokens = torch.arange(100)
    w = stdlib_corpus.eval_windows(tokens, context=8, max_chars=10**6)
    assert w.shape == (12, 9)
    predicted = w[:, 1:].flatten()
    assert torch.equal(predicted, torch.arange(1, 97))


def test_digits_split_is_deterministic_and_disjoint():
    a, b = digits.load_split(), digits.load_split()
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not set(a.train_index) & set(a.val_index)
    assert len(a.train_index) + len(a.val_index) == 1797
    assert len(a.val_index) == digits.N_VAL
    assert a.x_train.shape[1:] == (1, 16, 16)
    assert set(a.y_val.tolist()) == set(range(10))
    assert abs(float(a.x_train.mean())) < 1e-4  # normalized with training statistics


def test_augment_shifts_are_seeded():
    x = digits.load_split().x_train[:8]
    one = digits.augment(x, torch.Generator().manual_seed(1))
    two = digits.augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(one, two) and one.shape == x.shape


def test_calibration_comes_from_the_training_split():
    spec = zoo.reference("digits-cnn")
    calib = spec.calibration(spec.build(), 16)
    assert torch.equal(calib, digits.load_split().x_train[:16])

    lm = zoo.reference("char-lm")
    model = lm.build({"dim": 16, "n_layers": 1, "n_heads": 2, "ffn_dim": 32, "context": 32})
    windows = lm.calibration(model, 4)
    assert windows.shape == (4, 32)
    train_text = stdlib_corpus.load_split().train_text
    for row in windows:
        assert stdlib_corpus.decode(row.tolist()) in train_text
