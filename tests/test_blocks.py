"""The lessons' own code for CNN blocks: notebook 06's MLP and shift_images, notebook 07's ResidualBlock, SmallResNet
and make_net (the notebooks' lesson-code cells)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from support import has_real
from torch import nn

import course_utils as cu
from course_machinery.lessons import NOTEBOOKS, lesson_code

ns06 = lesson_code("06")  # what notebook 06's lesson-code cells define, as the learner's notebook defines it
ns = lesson_code("07")  # notebook 07's: the residual block and the networks built from it


def _conv_count(model: nn.Module, kernel: int) -> int:
    return sum(isinstance(m, nn.Conv2d) and m.kernel_size == (kernel, kernel) for m in model.modules())


# ---------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------
def test_mlp_shapes_parameters_and_a_clear_error_for_another_size():
    model = ns06.MLP(hidden=(256, 128))
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    assert cu.count_parameters(model) == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    assert cu.count_parameters(ns06.MLP(hidden=())) == 784 * 10 + 10  # a linear classifier
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, 1, 28, 28\).*image_size"):
        model(torch.zeros(5, 1, 56, 56))


@pytest.mark.parametrize(
    ("cin", "cout", "stride", "projection"),
    [(16, 16, 1, False), (16, 32, 1, True), (16, 16, 2, True), (16, 32, 2, True)],
)
def test_residual_block_shapes_and_projection_only_when_the_shape_changes(cin, cout, stride, projection):
    block = ns.ResidualBlock(cin, cout, stride)
    assert block(torch.randn(2, cin, 8, 8)).shape == (2, cout, 8 // stride, 8 // stride)
    assert isinstance(block.shortcut, nn.Sequential) == projection
    assert _conv_count(block, 1) == int(projection)
    convs = 9 * cin * cout + 9 * cout * cout  # conv1 (cin->cout) + conv2 (cout->cout), no biases
    bns = 2 * 2 * cout + (2 * cout if projection else 0)
    assert cu.count_parameters(block) == convs + bns + (cin * cout if projection else 0)


def test_residual_block_matches_torchvision_basic_block():
    from torchvision.models.resnet import BasicBlock, conv1x1

    theirs = BasicBlock(64, 128, 2, downsample=nn.Sequential(conv1x1(64, 128, 2), nn.BatchNorm2d(128))).eval()
    ours = ns.ResidualBlock(64, 128, 2).eval()
    state = {k.replace("downsample.", "shortcut."): v for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state)  # the same names and shapes, once downsample is called shortcut
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-6)


def test_plain_block_has_no_shortcut_and_gradient_reaches_input_only_through_the_residual_one():
    plain, residual = ns.ResidualBlock(8, 8, residual=False), ns.ResidualBlock(8, 8)
    assert plain.shortcut is None and cu.count_parameters(plain) == cu.count_parameters(residual)
    for block, reaches in ((plain, False), (residual, True)):
        with torch.no_grad():
            for conv in (block.conv1, block.conv2):
                conv.weight.zero_()  # the residual branch gives zeros: only the shortcut is left
        x = torch.randn(2, 8, 6, 6, requires_grad=True)
        block.eval()(x).sum().backward()
        assert bool(torch.any(x.grad != 0)) == reaches


def test_small_resnet_global_average_pooling_accepts_28_and_56_pixel_images():
    model = ns.SmallResNet().eval()
    with torch.no_grad():
        assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
        assert model(torch.zeros(3, 1, 56, 56)).shape == (3, 10)  # the same weights, a larger image
    assert model.fc.in_features == 128  # one value per channel of the last stage
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.zeros(1, 28, 28))


def test_make_net_depth_counts_weighted_layers_and_plain_differs_only_by_shortcuts():
    for depth in (8, 20):
        plain, residual = ns.make_net(depth, residual=False), ns.make_net(depth, residual=True)
        assert _conv_count(plain, 3) + 1 == depth  # 3x3 convolutions + the final linear layer
        assert _conv_count(residual, 3) == _conv_count(plain, 3)
        assert _conv_count(plain, 1) == 0 and _conv_count(residual, 1) == 2  # projections at stages 2 and 3
    with pytest.raises(ValueError, match="6n"):
        ns.make_net(10, residual=True)


def test_gradient_reaches_the_first_layer_of_a_deep_residual_network():
    torch.manual_seed(0)
    model = ns.make_net(20, residual=True)
    F.cross_entropy(model(torch.randn(8, 1, 28, 28)), torch.arange(8)).backward()
    assert model.stem[0].weight.grad.norm() > 0


def test_shift_images_moves_pixels_and_fills_the_border():
    images = torch.arange(16.0).view(1, 1, 4, 4)
    right = ns06.shift_images(images, 1, 0, fill=-1.0)
    assert torch.equal(right[0, 0, :, 1:], images[0, 0, :, :3]) and torch.all(right[0, 0, :, 0] == -1)
    up = ns06.shift_images(images, 0, -2)
    assert torch.equal(up[0, 0, :2], images[0, 0, 2:]) and torch.all(up[0, 0, 2:] == 0)
    assert torch.equal(ns06.shift_images(images, 0, 0), images)
    with pytest.raises(ValueError, match="out of the frame"):
        ns06.shift_images(images, 4, 0)


def test_the_lessons_residual_block_comes_after_the_exercise_it_answers():
    (path,) = NOTEBOOKS.glob("07_*.ipynb")
    code = [
        ("".join(c["source"]), "lesson-code" in c["metadata"].get("tags", []))
        for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
        if c["cell_type"] == "code"
    ]
    exercise = next(i for i, (source, _) in enumerate(code) if "class MyBlock" in source)
    defines = [i for i, (source, tagged) in enumerate(code) if tagged and "class ResidualBlock" in source]
    assert len(defines) == 1 and defines[0] > exercise  # the reference block follows the exercise
    assert not any("ResidualBlock" in source for source, _ in code[:exercise])  # nothing before it answers it
    # The same for the network: the lesson's SmallResNet follows the exercise that assembles one.
    network = next(i for i, (source, _) in enumerate(code) if "class MyResNet" in source)
    defines = [i for i, (source, tagged) in enumerate(code) if tagged and "class SmallResNet" in source]
    assert len(defines) == 1 and defines[0] > network
    assert not any("SmallResNet(" in source for source, _ in code[:network])
    # No lesson code depends on the learner's answers: the notebook runs whether or not they are solved.
    assert not any(
        name in source for source, tagged in code if tagged for name in ("MyBlock", "MyResNet", "GapCNN")
    )


# ---------------------------------------------------------------------------------------------------------
# The lessons' exercise checks (course_machinery/checks/lesson06.py, lesson07.py) are tested in
# test_exercises_06.py and test_exercises_07.py.
# ---------------------------------------------------------------------------------------------------------
def test_the_lessons_own_classes_do_not_pass_the_exercises_that_ask_for_them():
    from support.exercises import rejected

    from course_machinery.checks import lesson07

    rejected(lesson07.residual_block, ns.ResidualBlock)
    rejected(lesson07.my_resnet, ns.SmallResNet, ns.ResidualBlock)
    rejected(lesson07.gap_cnn, ns.SmallResNet)


@pytest.mark.realdata
@pytest.mark.skipif(not has_real("FashionMNIST"), reason="real Fashion-MNIST not in COURSE_DATA_DIR")
def test_small_resnet_learns_real_fashion_mnist():
    torch.manual_seed(0)
    data = cu.data.fashion_mnist(batch_size=128, subset=3000, test_subset=500, device="cpu")
    model = ns.SmallResNet(widths=(16, 32, 64))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for images, labels in data.train:
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in data.val)
    assert correct / 300 > 0.5  # one pass over 2,700 images: far above chance (10%)
