"""Benchmark 4: ResNet18 feature extraction on ants/bees: frozen-backbone features cached once vs recomputed.

Run: COURSE_DATA_DIR=../shared/data python benchmarks/bench_feature_cache.py
With the backbone frozen (requires_grad False, and its BatchNorm layers replaced by torchvision's
FrozenBatchNorm2d, as ``cu.resnet18_transfer`` does) and no augmentation, the backbone is a fixed function:
computing its 512 features per image once and training the head on the cached features gives the same result
as recomputing them every epoch, for a fraction of the time. Timing does not depend on the weights' values, so
where pretrained weights cannot be downloaded the benchmark uses random weights and says so.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import header, sync
from torch import nn

import course_utils as cu


@torch.no_grad()
def extract(backbone: nn.Module, loader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    backbone.eval()
    feats, labels = [], []
    for images, batch_labels in loader:
        feats.append(backbone(images.to(device)))  # (batch, 512)
        labels.append(batch_labels.to(device))
    return torch.cat(feats), torch.cat(labels)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = cu.get_device(args.device, verbose=False)
    header("ResNet18 feature extraction on ants/bees: cached features vs recomputed every epoch", device)
    model = cu.resnet18_transfer(2, allow_random=True, verbose=False).to(device)
    print(
        f"weights: {'pretrained ImageNet' if model.pretrained else 'RANDOM (pretrained unavailable; timing only)'}"
    )
    eval_tf = cu.data.default_transforms()[
        1
    ]  # resize + centre crop: deterministic, so features can be cached
    bundle = cu.data.hymenoptera(batch_size=32, transform=eval_tf, train_transform=eval_tf)
    loss_fn = nn.CrossEntropyLoss()

    # Recompute: every epoch runs images through the frozen backbone and the trainable head.
    optimizer = torch.optim.SGD(model.fc.parameters(), lr=1e-3, momentum=0.9)
    sync(device)
    start = time.perf_counter()
    cu.fit(
        model,
        bundle.train,
        epochs=args.epochs,
        optimizer=optimizer,
        loss_fn=loss_fn,
        verbose=False,
    )
    sync(device)
    recompute = (time.perf_counter() - start) / args.epochs

    # Cache: one pass through the backbone, then epochs over a (244, 512) tensor.
    head, model.fc = model.fc, nn.Identity()
    sync(device)
    start = time.perf_counter()
    feats, labels = extract(model, bundle.train, device)
    sync(device)
    cache_cost = time.perf_counter() - start
    optimizer = torch.optim.SGD(head.parameters(), lr=1e-3, momentum=0.9)
    sync(device)
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.epochs):
        order = torch.randperm(len(labels), generator=gen).to(device)
        for batch in order.split(32):
            loss = loss_fn(head(feats[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    sync(device)
    cached_epoch = (time.perf_counter() - start) / args.epochs
    print(f"recompute every epoch: {recompute:8.3f} s/epoch ({len(labels)} images)")
    print(
        f"cached features:       {cached_epoch:8.4f} s/epoch after a one-time {cache_cost:.2f} s extraction"
    )
    print(
        f"ratio per epoch: {recompute / cached_epoch:,.0f}x; "
        f"{args.epochs} epochs in total: {recompute * args.epochs / (cache_cost + cached_epoch * args.epochs):.1f}x"
    )


if __name__ == "__main__":
    main()
