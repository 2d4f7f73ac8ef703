"""The transfer experiment of notebook 04 (digits 0-4 -> 5-9), at reduced size, on the real MNIST."""

from __future__ import annotations

import pytest
import torch
from conftest import has_real
from torch import nn

from course_utils import config, data, engine, fewshot
from course_utils.models import SimpleCNN
from course_utils.synthetic import rendered_digits
from course_utils.tensorloader import TensorLoader

MEAN, STD = data.MNIST_MEAN, data.MNIST_STD


def test_select_classes_relabels_in_the_given_order():
    images = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1)
    labels = torch.tensor([5, 0, 9, 5, 7, 1])
    kept, new = fewshot.select_classes(images, labels, [9, 5])
    assert kept.flatten().tolist() == [0, 2, 3] and new.tolist() == [1, 0, 1]


def test_sample_per_class_draws_per_class_and_depends_on_the_seed():
    labels = torch.arange(5).repeat(40)  # 40 of each class
    a, b = fewshot.sample_per_class(labels, 10, seed=0), fewshot.sample_per_class(labels, 10, seed=1)
    assert torch.bincount(labels[a]).tolist() == [10] * 5 and len(set(a.tolist())) == 50
    assert set(a.tolist()) != set(b.tolist())
    with pytest.raises(ValueError, match="fewer than per_class"):
        fewshot.sample_per_class(labels, 41, seed=0)


def test_transfer_model_freezes_first_then_adds_the_head():
    torch.manual_seed(123)  # not the seed of the models built below
    source = SimpleCNN(num_classes=5)
    trainable = {
        s: {n for n, p in fewshot.transfer_model(s, source, 5, seed=0).named_parameters() if p.requires_grad}
        for s in fewshot.STRATEGIES
    }
    assert trainable["feature extraction"] == {"fc.weight", "fc.bias"}
    assert trainable["fine-tuning"] == trainable["from scratch"] == {n for n, _ in source.named_parameters()}
    tuned = fewshot.transfer_model("fine-tuning", source, 5, seed=0)
    assert (
        torch.equal(tuned.conv1.weight, source.conv1.weight) and tuned.conv1.weight is not source.conv1.weight
    )
    scratch = fewshot.transfer_model("from scratch", source, 5, seed=0)
    assert not torch.equal(scratch.conv1.weight, source.conv1.weight)
    with pytest.raises(ValueError, match="strategy must be one of"):
        fewshot.transfer_model("fine tuning", source, 5, seed=0)


def test_train_few_shot_takes_exactly_the_steps_asked_for():
    images, labels = rendered_digits(50, seed=0)
    model = SimpleCNN(num_classes=10)
    steps = []
    model.register_forward_pre_hook(lambda module, args: steps.append(1) if module.training else None)
    acc = fewshot.train_few_shot(
        model,
        images,
        labels,
        steps=6,
        batch_size=25,
        lr=1e-3,
        max_shift=2,
        mean=MEAN,
        std=STD,
        seed=0,
        eval_images=images,
        eval_labels=labels,
    )
    assert len(steps) == 6 and 0.0 <= acc <= 1.0
    with pytest.raises(ValueError, match="not a multiple"):
        fewshot.train_few_shot(
            model, images, labels, steps=3, batch_size=25, lr=1e-3, max_shift=0, mean=MEAN, std=STD, seed=0
        )


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not has_real("MNIST"), reason="real MNIST not in COURSE_DATA_DIR")
def test_pretrained_on_0_to_4_beats_scratch_on_5_to_9_from_10_images_per_class(monkeypatch):
    """Notebook 04, section 6, short budget: both transfer strategies beat training from scratch clearly.

    Reduced size: 150 pretraining steps instead of a full epoch, 2 seeds instead of 3, the short budget only.
    """
    monkeypatch.setattr(config, "SMOKE", False)
    bundle = data.mnist(val_fraction=0.0, device="cpu")
    x_train, y_train = bundle.train.images, bundle.train.labels
    source_x, source_y = fewshot.select_classes(x_train, y_train, [0, 1, 2, 3, 4])
    target_x, target_y = fewshot.select_classes(x_train, y_train, [5, 6, 7, 8, 9])
    test_x, test_y = fewshot.select_classes(bundle.test.images, bundle.test.labels, [5, 6, 7, 8, 9])

    torch.manual_seed(0)
    source = SimpleCNN(num_classes=5)
    loader = TensorLoader(
        source_x[: 150 * 64], source_y[: 150 * 64], batch_size=64, shuffle=True, mean=MEAN, std=STD, seed=0
    )
    engine.fit(
        source,
        loader,
        epochs=1,
        optimizer=torch.optim.Adam(source.parameters(), lr=1e-3),
        loss_fn=nn.CrossEntropyLoss(),
        verbose=False,
    )

    val_idx = fewshot.sample_per_class(target_y, 100, seed=1000)
    in_pool = torch.ones(len(target_y), dtype=torch.bool)
    in_pool[val_idx] = False
    pool_x, pool_y = target_x[in_pool], target_y[in_pool]
    seeds, lrs = [0, 1], [1e-3, 3e-3, 1e-2]
    val, models = {}, {}
    for seed in seeds:
        idx = fewshot.sample_per_class(pool_y, 10, seed)
        for strategy in fewshot.STRATEGIES:
            for lr in lrs:
                model = fewshot.transfer_model(strategy, source, 5, seed)
                val[strategy, lr, seed] = fewshot.train_few_shot(
                    model,
                    pool_x[idx],
                    pool_y[idx],
                    steps=20,
                    batch_size=25,
                    lr=lr,
                    max_shift=2,
                    mean=MEAN,
                    std=STD,
                    seed=seed,
                    eval_images=target_x[val_idx],
                    eval_labels=target_y[val_idx],
                )
                models[strategy, lr, seed] = model
    test_loader = TensorLoader(test_x, test_y, batch_size=1000, mean=MEAN, std=STD)
    test = {}
    for strategy in fewshot.STRATEGIES:
        lr = max(lrs, key=lambda lr: sum(val[strategy, lr, s] for s in seeds))  # chosen on validation only
        test[strategy] = sum(engine.evaluate(models[strategy, lr, s], test_loader)["acc"] for s in seeds) / 2
    for strategy in ("feature extraction", "fine-tuning"):
        assert test[strategy] >= test["from scratch"] + 0.03, test
