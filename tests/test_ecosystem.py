"""The real libraries, offline: a tiny Hugging Face ``transformers`` model built from a config (no weights
download) fed dict batches, and an ``accelerate.Accelerator``-prepared model, optimizer and loader.

Each restores bit for bit. The data is scikit-learn's bundled digits, as tokens: each 8x8 image pooled to
4x4 and its 17 grey levels used as token ids.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub, whatever a test does
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from lr_finder import LRFinder, lr_schedule  # noqa: E402
from lr_finder.loaders import BatchStream  # noqa: E402

from tasks import assert_same_state, digits_tensors, state_of  # noqa: E402

transformers = pytest.importorskip("transformers")  # imported once for the module (slow: several seconds)
accelerate = pytest.importorskip("accelerate")
transformers.logging.set_verbosity_error()

RT = {"show_progress": False}
CLS, VOCAB, SEQ = 18, 20, 17


def digit_tokens(n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, labels)``: a [CLS] token then the 16 grey levels (1..17) of the 4x4-pooled digit."""
    x, y = digits_tensors(n)
    pooled = torch.nn.functional.avg_pool2d((x * 16).reshape(-1, 1, 8, 8), 2).round().long().reshape(-1, 16)
    ids = torch.cat([torch.full((len(x), 1), CLS), pooled + 1], dim=1)
    return ids, y


IDS, LABELS = digit_tokens()


def dict_loader(records: list[dict[str, torch.Tensor]], batch_size: int = 32, shuffle: bool = True) -> (
    DataLoader
):
    g = torch.Generator().manual_seed(0) if shuffle else None
    return DataLoader(records, batch_size=batch_size, shuffle=shuffle, generator=g)  # type: ignore[arg-type]


# -- Hugging Face transformers ----------------------------------------------------------------------------


def tiny_gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(config)


def tiny_bert(num_labels: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32, num_labels=num_labels,
    )
    return transformers.BertForSequenceClassification(config)


def test_hf_causal_lm_with_dict_batches_and_labels():
    """GPT-2 built from a config computes its own loss from ``labels``: ``criterion=None``, no adapter."""
    model = tiny_gpt2()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train = dict_loader([{"input_ids": ids, "labels": ids} for ids in IDS])
    before = state_of(model, opt)
    finder = LRFinder(model, opt, None)
    h = finder.range_test(train, start_lr=1e-5, end_lr=1.0, num_iter=30, **RT)
    assert_same_state(before, state_of(model, opt))
    assert np.allclose(h.lr, lr_schedule(1e-5, 1.0, 30)[: len(h.lr)])
    assert h.loss[0] == pytest.approx(np.log(VOCAB), rel=0.1)  # starts at chance level
    assert min(h.loss) < h.loss[0] - 0.15  # and learns the token statistics
    lr = finder.get_suggested_lr()
    assert lr is not None and 1e-5 <= lr <= 1.0


def test_hf_sequence_classifier_with_attention_mask_and_val_loader():
    """BERT for classification: dict batches with ``attention_mask`` and ``labels``, a validation loader.

    A BERT trained from scratch needs a few dozen steps at a good LR before its loss moves, more than a
    short sweep gives it: the curve is flat at chance level, then diverges. What is checked here is the
    plumbing: validation loss from the HF output, the model put back in train mode, and an exact restore.
    """
    model = tiny_bert()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    mask = torch.ones(SEQ, dtype=torch.long)
    records = [
        {"input_ids": i, "attention_mask": mask, "labels": y} for i, y in zip(IDS, LABELS, strict=True)
    ]
    train = dict_loader(records[:400])
    val = dict_loader(records[400:], batch_size=50, shuffle=False)  # 112 samples: 50, 50, 12
    before = state_of(model, opt)
    finder = LRFinder(model, opt, None)
    h = finder.range_test(train, start_lr=1e-4, end_lr=10, num_iter=20, val_loader=val, smooth_f=0, **RT)
    assert_same_state(before, state_of(model, opt))
    assert model.training
    assert h.raw_loss[0] == pytest.approx(np.log(10), rel=0.05)
    assert max(h.raw_loss) > 1.2 * h.raw_loss[0]  # diverges at the top of the range


def test_hf_batch_encoding_is_moved_as_a_batch_encoding():
    from lr_finder.batches import batch_size, move_to_device

    enc = transformers.BatchEncoding({"input_ids": IDS[:4], "attention_mask": torch.ones(4, SEQ)})
    moved = move_to_device(enc, torch.device("meta"))
    assert isinstance(moved, transformers.BatchEncoding) and moved["input_ids"].device.type == "meta"
    assert batch_size(moved) == 4


def test_hf_dict_batches_with_a_criterion_say_what_to_do():
    model = tiny_gpt2()
    finder = LRFinder(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.CrossEntropyLoss())
    before = state_of(model, finder.optimizer)
    with pytest.raises(TypeError, match="criterion=None"):
        finder.range_test(dict_loader([{"input_ids": i, "labels": i} for i in IDS[:64]]), num_iter=5, **RT)
    assert_same_state(before, state_of(model, finder.optimizer))


# -- accelerate -------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_accelerate():
    """accelerate keeps process-wide state; each test starts and ends with none."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def digits_setup(seed: int = 0):
    x, y = digits_tensors(512)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=g)
    return model, opt, train


def plain_curve() -> tuple[float, ...]:
    model, opt, train = digits_setup()
    finder = LRFinder(model, opt, torch.nn.CrossEntropyLoss())
    return finder.range_test(train, start_lr=1e-4, end_lr=10, num_iter=30, **RT).raw_loss


def test_accelerate_prepared_model_optimizer_loader_and_scheduler(fresh_accelerate):
    """``Accelerator(cpu=True).prepare(...)``: the same curve as the unprepared objects, an exact restore,
    and the loader's data order unchanged."""
    reference = plain_curve()
    accelerator = accelerate.Accelerator(cpu=True)
    model, opt, train = digits_setup()
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=10)
    x, y = digits_tensors()
    val = DataLoader(TensorDataset(x[1500:1600], y[1500:1600]), batch_size=32)
    model, opt, train, val, scheduler = accelerator.prepare(model, opt, train, val, scheduler)
    assert type(opt).__name__ == "AcceleratedOptimizer"
    inner = opt.optimizer
    inner_attrs = set(vars(inner))

    torch.manual_seed(123)
    before = state_of(model, opt)
    finder = LRFinder(model, opt, torch.nn.CrossEntropyLoss())
    assert finder.optimizer is inner  # steps the wrapped optimizer (see LRFinder's notes on accelerate)
    h = finder.range_test(train, start_lr=1e-4, end_lr=10, num_iter=30, **RT)
    assert_same_state(before, state_of(model, opt))
    assert set(vars(inner)) == inner_attrs  # no scheduler bookkeeping left behind (`_opt_called`)
    assert train.iteration == 0 and not accelerator.gradient_state.in_dataloader  # loader bookkeeping restored
    assert h.raw_loss == pytest.approx(reference, rel=1e-5)
    lr = finder.get_suggested_lr()
    assert lr is not None and 1e-4 <= lr <= 10

    # a prepared validation loader: full passes every step, its pass counter put back each time
    with_val = finder.range_test(train, start_lr=1e-4, end_lr=10, num_iter=10, val_loader=val, **RT)
    assert len(with_val.raw_loss) == 10 and val.iteration == 0
    assert_same_state(before, state_of(model, opt))

    # the user's training goes on as if no test had run: same batches, same steps
    after_test = [b[1][:8].tolist() for b in train][:3]
    _, _, fresh = digits_setup()
    torch.manual_seed(123)
    assert after_test == [b[1][:8].tolist() for b in fresh][:3]
    model.train()
    x, y = next(iter(train))
    opt.zero_grad()
    accelerator.backward(torch.nn.functional.cross_entropy(model(x), y))
    opt.step()
    scheduler.step()


def test_accelerate_fp16_style_wrapper_uses_its_scaler_once(fresh_accelerate):
    """With ``mixed_precision="fp16"`` (CUDA), accelerate's optimizer wrapper runs its own GradScaler in
    ``step()``. Stepping the wrapper after an unscaled backward would divide every gradient by the scale
    (65536): a flat, wrong curve. The finder steps the wrapped optimizer and adopts the wrapper's scaler,
    so the curve is the plain one and the scaler's state is restored.

    ``Accelerator(cpu=True, mixed_precision="fp16")`` makes no scaler, so the wrapper is built here as
    ``Accelerator.prepare`` builds it on CUDA.
    """
    from accelerate.optimizer import AcceleratedOptimizer

    reference = plain_curve()
    accelerate.Accelerator(cpu=True)
    model, opt, train = digits_setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    wrapped = AcceleratedOptimizer(opt, scaler=scaler)
    scaler_state = scaler.state_dict()
    before = state_of(model, wrapped)
    finder = LRFinder(model, wrapped, torch.nn.CrossEntropyLoss())
    assert finder.optimizer is opt and finder.scaler is scaler
    h = finder.range_test(train, start_lr=1e-4, end_lr=10, num_iter=30, **RT)
    assert_same_state(before, state_of(model, wrapped))
    assert scaler.state_dict() == scaler_state
    assert h.raw_loss == pytest.approx(reference, rel=1e-5)

    with pytest.raises(ValueError, match="differs from the GradScaler of the wrapped optimizer"):
        LRFinder(model, wrapped, torch.nn.CrossEntropyLoss(), scaler=torch.amp.GradScaler("cpu"))


def test_accelerate_wrapped_lbfgs_is_refused(fresh_accelerate):
    accelerator = accelerate.Accelerator(cpu=True)
    model = torch.nn.Linear(4, 2)
    model, opt = accelerator.prepare(model, torch.optim.LBFGS(model.parameters()))
    with pytest.raises(TypeError, match="LBFGS"):
        LRFinder(model, opt, torch.nn.CrossEntropyLoss())


def test_accelerate_loader_bookkeeping_is_put_back(fresh_accelerate):
    """A prepared loader counts its passes (the epoch a seedable sampler shuffles with) and registers in
    accelerate's GradientState during a pass; a stream closed half-way leaves both as they were."""
    config = accelerate.DataLoaderConfiguration(use_seedable_sampler=True)
    accelerator = accelerate.Accelerator(cpu=True, dataloader_config=config)
    _, _, train = digits_setup()
    train = accelerator.prepare(train)
    state = accelerator.gradient_state
    first_epoch = [b[1][:8].tolist() for b in train]
    train.iteration = 0  # as before that epoch
    stream = BatchStream(train)
    for _ in range(len(train) * 2 + 3):  # two full passes and part of a third
        stream.next()
    assert train.iteration == 2 and state.in_dataloader
    stream.close()
    stream.close()
    assert train.iteration == 0 and not state.in_dataloader
    assert [b[1][:8].tolist() for b in train] == first_epoch
