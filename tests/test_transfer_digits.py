"""Notebook 04's few-shot transfer (digits 0-4 -> 5-9): its lesson code, and the experiment, reduced, on real MNIST."""

from __future__ import annotations

import copy

import pytest
import torch
from support import has_real
from torch import nn

import course_utils as cu
from course_machinery.lessons import lesson_code
from course_machinery.standins import rendered_digits

ns = lesson_code("04")  # select_classes, sample_per_class, STRATEGIES, transfer_model, train_few_shot
MEAN, STD = cu.data.MNIST_MEAN, cu.data.MNIST_STD


def random_states() -> list[torch.Tensor]:
    """Torch's global random states: the CPU generator's, and each CUDA device's where there is one."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return [torch.random.get_rng_state(), *cuda]


def same(xs, ys) -> bool:
    """Whether two sequences of tensors are equal, tensor by tensor."""
    xs, ys = list(xs), list(ys)
    return len(xs) == len(ys) and all(torch.equal(x, y) for x, y in zip(xs, ys, strict=True))


def test_select_classes_relabels_in_the_given_order():
    images = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1)
    labels = torch.tensor([5, 0, 9, 5, 7, 1])
    kept, new = ns.select_classes(images, labels, [9, 5])
    assert kept.flatten().tolist() == [0, 2, 3] and new.tolist() == [1, 0, 1]


def test_sample_per_class_draws_per_class_and_depends_on_the_seed():
    labels = torch.arange(5).repeat(40)  # 40 of each class
    a, b = ns.sample_per_class(labels, 10, seed=0), ns.sample_per_class(labels, 10, seed=1)
    assert torch.bincount(labels[a]).tolist() == [10] * 5 and len(set(a.tolist())) == 50
    assert set(a.tolist()) != set(b.tolist())
    assert torch.equal(a, ns.sample_per_class(labels, 10, seed=0))
    with pytest.raises(ValueError, match="fewer than per_class"):
        ns.sample_per_class(labels, 41, seed=0)


def test_transfer_model_freezes_first_then_adds_the_head():
    torch.manual_seed(123)  # not the seed of the models built below
    source = cu.SimpleCNN(num_classes=5)
    trainable = {
        s: {n for n, p in ns.transfer_model(s, source, 5, seed=0).named_parameters() if p.requires_grad}
        for s in ns.STRATEGIES
    }
    assert trainable["feature extraction"] == {"fc.weight", "fc.bias"}
    assert trainable["fine-tuning"] == trainable["from scratch"] == {n for n, _ in source.named_parameters()}
    tuned = ns.transfer_model("fine-tuning", source, 5, seed=0)
    assert (
        torch.equal(tuned.conv1.weight, source.conv1.weight) and tuned.conv1.weight is not source.conv1.weight
    )
    scratch = ns.transfer_model("from scratch", source, 5, seed=0)
    assert not torch.equal(scratch.conv1.weight, source.conv1.weight)
    with pytest.raises(ValueError, match="strategy must be one of"):
        ns.transfer_model("fine tuning", source, 5, seed=0)


def test_transfer_model_repeats_for_a_seed_and_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    source = cu.SimpleCNN(num_classes=5)
    before = random_states()
    for strategy in ns.STRATEGIES:
        a, b, c = (ns.transfer_model(strategy, source, 5, seed=s) for s in (0, 0, 1))
        assert same(a.state_dict().values(), b.state_dict().values()), strategy  # same seed, same model
        assert not torch.equal(a.fc.weight, c.fc.weight), strategy  # the seed decides the new weights
    after = random_states()
    assert same(before, after), "the global random state changed"


def test_train_few_shot_repeats_for_a_seed_and_leaves_the_global_generator_alone():
    """With dropout (ImprovedCNN), training draws random numbers beyond the loader's own generator."""
    images, labels = rendered_digits(50, seed=0)
    torch.manual_seed(0)
    start = cu.ImprovedCNN(num_classes=10)
    before = random_states()
    runs = []
    for seed in (0, 0, 1):
        model = copy.deepcopy(start)
        acc = ns.train_few_shot(
            model,
            images,
            labels,
            steps=4,
            batch_size=25,
            lr=1e-3,
            max_shift=2,
            mean=MEAN,
            std=STD,
            seed=seed,
            eval_images=images,
            eval_labels=labels,
        )
        runs.append((acc, model.state_dict()))
    after = random_states()
    assert same(before, after), "the global random state changed"
    (acc_a, a), (acc_b, b), (_, c) = runs
    assert acc_a == acc_b and same(a.values(), b.values())  # the same seed: the same run
    assert not torch.equal(a["fc.weight"], c["fc.weight"])


def test_train_few_shot_takes_exactly_the_steps_asked_for():
    images, labels = rendered_digits(50, seed=0)
    model = cu.SimpleCNN(num_classes=10)
    steps = []
    model.register_forward_pre_hook(lambda module, args: steps.append(1) if module.training else None)
    acc = ns.train_few_shot(
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
        ns.train_few_shot(
            model, images, labels, steps=3, batch_size=25, lr=1e-3, max_shift=0, mean=MEAN, std=STD, seed=0
        )


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not has_real("MNIST"), reason="real MNIST not in COURSE_DATA_DIR")
def test_pretrained_on_0_to_4_beats_scratch_on_5_to_9_from_10_images_per_class():
    """Notebook 04, section 6, short budget: both transfer strategies beat training from scratch clearly.

    Reduced size: 150 pretraining steps instead of a full epoch, 2 seeds instead of 3, the short budget only.
    """
    bundle = cu.data.mnist(val_fraction=0.0, device="cpu")
    x_train, y_train = bundle.train.images, bundle.train.labels
    source_x, source_y = ns.select_classes(x_train, y_train, [0, 1, 2, 3, 4])
    target_x, target_y = ns.select_classes(x_train, y_train, [5, 6, 7, 8, 9])
    test_x, test_y = ns.select_classes(bundle.test.images, bundle.test.labels, [5, 6, 7, 8, 9])

    torch.manual_seed(0)
    source = cu.SimpleCNN(num_classes=5)
    loader = cu.data.TensorLoader(
        source_x[: 150 * 64], source_y[: 150 * 64], batch_size=64, shuffle=True, mean=MEAN, std=STD, seed=0
    )
    cu.fit(
        source,
        loader,
        epochs=1,
        optimizer=torch.optim.Adam(source.parameters(), lr=1e-3),
        loss_fn=nn.CrossEntropyLoss(),
        verbose=False,
    )

    val_idx = ns.sample_per_class(target_y, 100, seed=1000)
    in_pool = torch.ones(len(target_y), dtype=torch.bool)
    in_pool[val_idx] = False
    pool_x, pool_y = target_x[in_pool], target_y[in_pool]
    seeds, lrs = [0, 1], [1e-3, 3e-3, 1e-2]
    val, models = {}, {}
    for seed in seeds:
        idx = ns.sample_per_class(pool_y, 10, seed)
        for strategy in ns.STRATEGIES:
            for lr in lrs:
                model = ns.transfer_model(strategy, source, 5, seed)
                val[strategy, lr, seed] = ns.train_few_shot(
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
    test_loader = cu.data.TensorLoader(test_x, test_y, batch_size=1000, mean=MEAN, std=STD)
    test = {}
    for strategy in ns.STRATEGIES:
        lr = max(lrs, key=lambda lr: sum(val[strategy, lr, s] for s in seeds))  # chosen on validation only
        test[strategy] = sum(cu.evaluate(models[strategy, lr, s], test_loader)["acc"] for s in seeds) / 2
    for strategy in ("feature extraction", "fine-tuning"):
        assert test[strategy] >= test["from scratch"] + 0.03, test
