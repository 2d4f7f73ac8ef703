"""Checks for notebook 06's exercises: the bottleneck's saving, a residual block, a small ResNet that starts as the
identity, and a network trained to a target accuracy within a time budget.

Each check prints one ✅ line or one ❌ hint and returns a Verdict; ``hidden=True`` (through ``grade``) tries more
inputs. The lesson's own ``ResidualBlock`` and ``SmallResNet`` come after the exercises that ask for them; the
checks refuse them (the class itself, a subclass, a copy of its code, or an instance of it inside the answer).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import math
import random
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from course_utils import evaluate, train_one_epoch
from course_utils._models import count_parameters

from ._feedback import NOT_YET, Verdict, failed, grade, number, passed, raised, same, unanswered, watch_calls

__all__ = ["grade", "bottleneck_ratio", "residual_block", "my_resnet", "time_to_accuracy"]

_REFERENCES = (
    "ResidualBlock",
    "SmallResNet",
)  # the lesson's classes, shown after the exercises that build them


# ---------------------------------------------------------------------------------------------------------
# Helpers: recognising the lesson's own classes, skeletons, one-line errors
# ---------------------------------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _code_key(code: types.CodeType) -> tuple:
    """What a function's code does, without its names of locals or line numbers: a copied method has the same."""
    consts = tuple(_code_key(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts)
    return (code.co_code, code.co_names, consts)


def _method_keys(cls: type) -> set[tuple]:
    keys = set()
    for name in ("__init__", "forward"):
        function = cls.__dict__.get(name)
        code = getattr(function, "__code__", None)
        if code is not None:
            keys.add((name, _code_key(code)))
    return keys


def _reference_classes() -> list[type]:
    """The lesson's ResidualBlock and SmallResNet: as the running notebook defines them, and as the lesson stores them."""
    found: list[type] = []
    namespaces: list[dict] = []
    try:
        namespaces.append(get_ipython().user_ns)  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        pass
    main = sys.modules.get("__main__")
    if main is not None:
        namespaces.append(vars(main))
    try:
        from course_machinery.lessons import lesson_code

        namespaces.append(vars(lesson_code("06")))
    except Exception:  # the notebook is not at hand (an installed copy): the kernel's names are enough
        pass
    for namespace in namespaces:
        for name in _REFERENCES:
            value = namespace.get(name)
            if isinstance(value, type) and value not in found:
                found.append(value)
    return found + [cls for cls in _library_blocks() if cls not in found]


def _library_blocks() -> list[type]:
    """torchvision's ResNet blocks and network: a wrapper around them is no block of one's own either."""
    try:
        from torchvision.models import resnet
    except Exception:  # torchvision missing: nothing of it to refuse
        return []
    return [resnet.BasicBlock, resnet.Bottleneck, resnet.ResNet]


def _reference_methods(references: Sequence[type]) -> dict[str, Any]:
    """The reference classes' __init__ and forward, for ``watch_calls``: seen by their code object however the
    answer reaches them (``ResidualBlock.forward(self, x)`` in a transplant, an instance built and discarded)."""
    methods: dict[str, Any] = {}
    for cls in references:
        for name in ("__init__", "forward", "_forward_impl"):
            function = cls.__dict__.get(name)
            if getattr(function, "__code__", None) is not None:
                methods[f"{cls.__name__}.{name}"] = function
    return methods


def _is_reference(cls: Any, references: Sequence[type]) -> bool:
    """Whether ``cls`` is one of the lesson's classes, a subclass of one, or a class with a method copied from one."""
    if not isinstance(cls, type):
        return False
    keys = [_method_keys(ref) for ref in references]
    for klass in cls.__mro__:
        if klass in references:
            return True
        mine = _method_keys(klass)
        if mine and any(mine & theirs for theirs in keys):
            return True
    return any(issubclass(cls, ref) for ref in references)


def _uses_reference(module: nn.Module, references: Sequence[type]) -> bool:
    return any(_is_reference(type(m), references) for m in module.modules())


def _returns_none(build: Callable[[], Any], shape: tuple[int, ...]) -> bool:
    """Whether a module built by ``build`` returns None on zeros: a skeleton whose forward is still ``...``."""
    try:
        module = build()
        with torch.no_grad():
            return module.eval()(torch.zeros(shape)) is None
    except Exception:  # reported, with more context, by the check itself
        return False


@contextlib.contextmanager
def _small_tensors() -> Iterator[None]:
    """The learner's random state left as it was, and one thread: the checks' tensors are tiny, and on a busy
    machine several threads per tiny operation cost more than they save."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(6)
            yield
    finally:
        torch.set_num_threads(threads)


def _is_1x1(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)


def _zero_3x3(module: nn.Module) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d) and not _is_1x1(m):
                m.weight.zero_()
                if m.bias is not None:
                    m.bias.zero_()


# ---------------------------------------------------------------------------------------------------------
# Exercise 1: what a bottleneck saves
# ---------------------------------------------------------------------------------------------------------
_RATIO_CASES = [(120, 40), (96, 16)]  # other channel ratios than 256 -> 64: the ratio depends on it
_RATIO_HIDDEN = [(200, 25), (64, 48), (30, 10), (512, 96), (40, 40)]


def bottleneck_ratio(fn: Any, *, hidden: bool = False) -> Verdict:
    """Check ``fn(channels, reduced)``: the weights of one 3x3 convolution channels -> channels divided by those
    of the bottleneck channels -> reduced (1x1) -> reduced (3x3) -> channels (1x1), no biases, by the formula.

    Args:
        fn: The learner's function.
        hidden: Try more (channels, reduced) pairs.

    Returns:
        A true Verdict when every pair gives the ratio.
    """
    if unanswered(fn):
        return NOT_YET
    if not callable(fn):
        return failed(
            "bottleneck_ratio should be the function itself, called as bottleneck_ratio(channels, reduced)."
        )
    watched = {"cu.count_parameters": count_parameters, "nn.Conv2d": nn.Conv2d.__init__}
    cases = list(_RATIO_CASES)
    if hidden:  # fixed pairs and pairs drawn anew on every run: no table of answers covers them
        rng = random.Random(random.SystemRandom().getrandbits(64))
        cases += _RATIO_HIDDEN + [(c, rng.randint(1, c)) for c in (rng.randint(8, 1024) for _ in range(6))]
    with watch_calls(watched) as seen:
        answers = []
        for channels, reduced in cases:
            try:
                answers.append(fn(channels, reduced))
            except Exception as exc:  # learner code: report, do not raise
                return raised(exc)
            if answers[0] is None and unanswered(None):  # the skeleton's body is still `...`
                return NOT_YET
    meta = sorted(name for name in seen if name.startswith(("sys.", "inspect.", "gc.")))
    if meta:
        return failed(
            f"your function calls {', '.join(meta)}: work the ratio out from the formula, without inspecting or "
            "switching off the check."
        )
    if seen:
        return failed(
            "work it out from the formula for a convolution's weights, without building layers or counting "
            "their parameters: the function should work for channel counts no one has built."
        )
    for (channels, reduced), answer in zip(cases, answers, strict=True):
        single = channels * channels * 9
        bottleneck = channels * reduced + reduced * reduced * 9 + reduced * channels
        value = number(answer)
        if value is None:
            return failed(
                f"bottleneck_ratio({channels}, {reduced}) returned {answer!r}; it should return a number."
            )
        if same(value, bottleneck / single):
            return failed(
                "that is the bottleneck's count over the single convolution's: the ratio is single / bottleneck."
            )
        if not same(value, single / bottleneck):
            return failed(
                f"bottleneck_ratio({channels}, {reduced}) is not the ratio. A convolution has out x in x k x k "
                "weights; add up the bottleneck's three convolutions (1x1, 3x3, 1x1, with their own channels), "
                "then divide the single 3x3 convolution's count by that sum."
            )
    return passed(
        f"the ratio for all {len(cases)} pairs of channel counts: the 3x3 convolution, the expensive part, "
        "works on fewer channels."
    )


# ---------------------------------------------------------------------------------------------------------
# Exercise 2: a residual block
# ---------------------------------------------------------------------------------------------------------
# (in_channels, out_channels, stride, (height, width)): other channel counts and sizes than the notebook shows
_BLOCK_CASES = [(12, 12, 1, (9, 9)), (12, 20, 1, (9, 9)), (12, 12, 2, (9, 9)), (12, 20, 2, (9, 9))]
_BLOCK_HIDDEN = [
    (6, 6, 1, (7, 10)),
    (6, 16, 2, (7, 10)),
    (24, 8, 2, (6, 5)),
    (20, 20, 2, (11, 11)),
    (5, 9, 1, (4, 4)),
]


def _block_case(
    block_cls: Any, cin: int, cout: int, stride: int, size: tuple[int, int], refs: list[type]
) -> str | None:
    """What is wrong with ``block_cls(cin, cout, stride)`` on an input of ``size``, in one sentence; None if right."""
    call = f"{getattr(block_cls, '__name__', 'the block')}({cin}, {cout}, stride={stride})"
    changes = cin != cout or stride != 1
    own = "build the block from nn.Conv2d and nn.BatchNorm2d layers yourself, not from the lesson's ResidualBlock (or torchvision's)."
    watched = _reference_methods(refs)
    try:
        with watch_calls(watched) as seen:
            block = block_cls(cin, cout, stride)
    except Exception as exc:  # learner code: report, do not raise
        return f"{call} raised {_first_line(exc)}. The block is built as MyBlock(in_channels, out_channels, stride)."
    if seen:
        return own
    if not isinstance(block, nn.Module):
        return (
            f"{call} returned a {type(block).__name__}; subclass nn.Module and build the layers in __init__."
        )
    if _uses_reference(block, refs):
        return own
    if sum(isinstance(m, nn.BatchNorm2d) for m in block.modules()) < 2:
        return f"{call}: F is conv 3x3 -> BN -> ReLU -> conv 3x3 -> BN; each 3x3 convolution is followed by a BatchNorm."
    block.eval()  # fresh BatchNorm layers in eval mode: nothing changes between two calls
    h, w = size
    x = torch.randn(2, cin, h, w, requires_grad=True)
    try:
        with watch_calls(watched) as seen:
            out = block(x)
    except Exception as exc:
        extra = " When the shape changes, x cannot be added as it is: project it." if changes else ""
        return f"{call} failed on an input of shape {tuple(x.shape)}: {_first_line(exc)}.{extra}"
    if seen:
        return own
    if not isinstance(out, torch.Tensor) or out.ndim != 4:
        return f"{call} should return a 4-D tensor (batch, channels, height, width)."
    if out.shape[1] != cout:
        return f"{call} returned {out.shape[1]} channels; the output should have out_channels channels."
    if tuple(out.shape[2:]) != (math.ceil(h / stride), math.ceil(w / stride)):
        return (
            f"{call} turned a {h}x{w} input into {out.shape[2]}x{out.shape[3]}: the stride should divide the "
            "height and width once (padding=1 keeps them in a 3x3 convolution), in the residual branch and in "
            "the shortcut alike."
        )
    if out.min() < 0:
        return f"{call} gives negative values: the block ends with a ReLU, applied to the sum F(x) + shortcut(x)."
    if not changes and not bool((out < F.relu(x) - 1e-4).any()):
        return (
            f"{call} never gives less than its input: F ends with BatchNorm, without a ReLU, so that the "
            "correction it adds can be negative as well as positive; the only ReLU after the last BN comes after the sum."
        )
    projections = [m for m in block.modules() if _is_1x1(m)]
    if not changes and projections:
        return (
            f"{call} has a 1x1 convolution, but when the shape does not change the shortcut should be the "
            "identity: a projection there only adds parameters and a path that is no longer a plain copy of x."
        )
    if changes and not projections:
        return f"{call} changes the shape, so its shortcut needs a 1x1 convolution (with the block's stride)."
    # Switch the residual branch off (its 3x3 convolutions give zeros): what is left is the shortcut.
    with torch.no_grad():
        before = block(x)
        _zero_3x3(block)
        after = block(x)
    if torch.allclose(before, after):
        return f"{call}: the 3x3 convolutions do not change the output; is the residual branch used?"
    if not changes and not torch.allclose(after, F.relu(x), atol=1e-5):
        return (
            f"{call}: with the 3x3 convolutions set to zero the output is not ReLU(x): when the shape does not "
            "change, the shortcut is x itself, added unchanged."
        )
    block(x).sum().backward()
    if x.grad is None or not torch.any(x.grad != 0):
        return (
            f"{call}: with the 3x3 convolutions set to zero no gradient reaches the input, so there is no "
            "shortcut. Add it to the branch's output: out = branch(x) + shortcut(x)."
        )
    return None


def residual_block(block_cls: Any, *, hidden: bool = False) -> Verdict:
    """Check a learner's residual block class, built as ``block_cls(in_channels, out_channels, stride)``.

    Same and changed channels, stride 1 and 2, on sizes the notebook does not use: the output shape, a ReLU after
    the sum (and none before it), a shortcut that is x itself when the shape does not change and a 1x1
    projection when it does, and a gradient that reaches the input through the shortcut when the 3x3
    convolutions are switched off. The lesson's ResidualBlock (itself, a subclass or a copy) is refused.

    Args:
        block_cls: The learner's ``nn.Module`` subclass (the class, not an instance).
        hidden: Try more channel counts, strides and sizes.

    Returns:
        A true Verdict when every case passes.
    """
    if unanswered(block_cls):
        return NOT_YET
    if isinstance(block_cls, nn.Module) or not callable(block_cls):
        return failed(
            "pass the class itself (e.g. MyBlock), not an instance: the check builds blocks of its own."
        )
    refs = _reference_classes()
    if _is_reference(block_cls, refs):
        return failed(
            "MyBlock should be your own block, written from the formula: not the lesson's ResidualBlock, a "
            "subclass of it or a copy of its code."
        )
    with _small_tensors():
        if _returns_none(lambda: block_cls(8, 8, 1), (1, 8, 6, 6)) and unanswered(None):
            return NOT_YET
        cases = _BLOCK_CASES + (_BLOCK_HIDDEN if hidden else [])
        for cin, cout, stride, size in cases:
            problem = _block_case(block_cls, cin, cout, stride, size, refs)
            if problem is not None:
                return failed(problem)
    return passed(
        f"right shapes in all {len(cases)} cases, ReLU after the sum, the identity where the shape stays and a "
        "projection where it changes, and the gradient reaches the input through the shortcut."
    )


# ---------------------------------------------------------------------------------------------------------
# Exercise 3: a small ResNet from your block, starting as the identity
# ---------------------------------------------------------------------------------------------------------
# (widths, num_classes, in_channels, image sizes): other widths, classes, channels and sizes than the notebook's
_NET_CASES = [((8, 16, 24), 5, 3, [(20, 20), (28, 28)])]
_NET_HIDDEN = [((6, 10, 12), 4, 1, [(16, 16), (30, 22)]), ((16, 24, 32), 10, 1, [(28, 28), (44, 44)])]


def _net_case(
    net_cls: Any,
    block_cls: type,
    widths: tuple[int, ...],
    classes: int,
    cin: int,
    sizes: list,
    refs: list[type],
) -> str | None:
    """What is wrong with ``net_cls(widths=..., num_classes=..., in_channels=...)``, in one sentence; None if right."""
    call = f"MyResNet(widths={widths}, num_classes={classes}, in_channels={cin})"
    watched = _reference_methods(refs)
    try:
        with watch_calls(watched) as seen:
            net = net_cls(widths=widths, num_classes=classes, in_channels=cin)
    except Exception as exc:
        return f"{call} raised {_first_line(exc)}."
    if not isinstance(net, nn.Module):
        return f"{call} returned a {type(net).__name__}; subclass nn.Module."
    if seen or _uses_reference(net, refs):
        return (
            "assemble the network from your own MyBlock, not from the lesson's SmallResNet or ResidualBlock."
        )
    blocks = [m for m in net.modules() if type(m) is block_cls]
    if len(blocks) < 3:
        return (
            f"{call} holds {len(blocks)} MyBlock(s): build its three stages from your MyBlock of exercise 2."
        )
    if not all(p.requires_grad for p in net.parameters()):
        return f"{call} has frozen parameters: every parameter should train, the zeroed scales too."
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [b.register_forward_hook(lambda _m, args, out: calls.append((args[0], out))) for b in blocks]
    net.train()  # as it will be trained; with a zero scale the last BN gives zeros in either mode
    try:
        for h, w in sizes:
            calls.clear()
            x = torch.randn(2, cin, h, w)
            try:
                with torch.no_grad(), watch_calls(watched) as seen:
                    out = net(x)
            except Exception as exc:
                return f"{call} failed on images of shape {tuple(x.shape)}: {_first_line(exc)}."
            if seen:
                return "assemble the network from your own MyBlock, not from the lesson's SmallResNet or ResidualBlock (or torchvision's)."
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, classes):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                return (
                    f"{call} gave {shape} for a batch of two {h}x{w} images: it should give one score per class "
                    "for each image, whatever the image size (average each channel over all positions first)."
                )
            if len(calls) != 3:
                return f"{call} called its MyBlocks {len(calls)} times in one forward pass: one block per stage, three stages."
            for i, (inp, res) in enumerate(calls):
                if res.shape[1] != widths[i]:
                    return f"{call}: the block of stage {i + 1} gives {res.shape[1]} channels; stage i has widths[i] channels."
                halves = (math.ceil(inp.shape[2] / 2), math.ceil(inp.shape[3] / 2))
                wanted = tuple(inp.shape[2:]) if i == 0 else halves
                if tuple(res.shape[2:]) != wanted:
                    return (
                        f"{call}: the block of stage {i + 1} turns {inp.shape[2]}x{inp.shape[3]} maps into "
                        f"{res.shape[2]}x{res.shape[3]}; the first stage keeps the resolution, each later stage "
                        "halves it in its first block."
                    )
                if inp.shape == res.shape and not torch.allclose(res, F.relu(inp), atol=1e-5):
                    return (
                        f"{call}: at initialisation the block of stage {i + 1} does not return its input. A block "
                        "should start as the identity: its residual branch must give zeros."
                    )
        # The branches give zeros whatever their convolutions hold: re-draw every 3x3 weight inside the blocks.
        x = torch.randn(2, cin, *sizes[0])
        other = copy.deepcopy(net)
        with torch.no_grad():
            for block in (m for m in other.modules() if type(m) is block_cls):
                for m in block.modules():
                    if isinstance(m, nn.Conv2d) and not _is_1x1(m):
                        m.weight.normal_(0, 0.5)
            same_output = torch.allclose(net(x), other(x), atol=1e-5)
        if not same_output:
            return (
                f"{call}: new random weights in the blocks' 3x3 convolutions change the output, so the residual "
                "branches are not zero at initialisation. Zero the scale of each block's last BatchNorm."
            )
    finally:
        for hook in hooks:
            hook.remove()
    out = net(x)
    F.cross_entropy(out, torch.arange(2) % classes).backward()
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or first.weight.grad is None or not torch.any(first.weight.grad != 0):
        return f"{call}: no gradient reaches the first convolution; the shortcuts should carry it back."
    for i, block in enumerate(blocks[:3]):
        zeroed = [
            m
            for m in block.modules()
            if isinstance(m, nn.BatchNorm2d) and m.weight is not None and not torch.any(m.weight != 0)
        ]
        if not zeroed:
            return f"{call}: the block of stage {i + 1} has no BatchNorm whose scale starts at zero."
        if any(m.weight.grad is None or not torch.any(m.weight.grad != 0) for m in zeroed):
            return f"{call}: a zeroed BatchNorm scale in stage {i + 1} gets no gradient, so the block can never leave the identity."
    return None


def my_resnet(net_cls: Any, block_cls: Any, *, hidden: bool = False) -> Verdict:
    """Check ``net_cls(widths=..., num_classes=..., in_channels=...)``: a small ResNet assembled from ``block_cls``.

    On other widths, class counts, input channels and image sizes than the notebook's: the output shape for two
    image sizes (global average pooling), three stages of the learner's block (the first keeps the resolution,
    the others halve it), every block the identity at initialisation (the residual branch gives zeros whatever
    its 3x3 weights), gradients that reach the first layer and the zeroed scales. The lesson's SmallResNet and
    ResidualBlock (themselves, subclasses, copies or instances inside) are refused.

    Args:
        net_cls: The learner's network class.
        block_cls: The learner's block class (exercise 2), from which the network is built.
        hidden: Try more configurations.

    Returns:
        A true Verdict when every configuration passes.
    """
    if unanswered(net_cls):
        return NOT_YET
    if isinstance(net_cls, nn.Module) or not callable(net_cls):
        return failed(
            "pass the class itself (MyResNet), not an instance: the check builds networks of its own."
        )
    refs = _reference_classes()
    if _is_reference(net_cls, refs):
        return failed(
            "MyResNet should be your own network: not the lesson's SmallResNet, a subclass of it or a copy of its code."
        )
    with _small_tensors():
        if _returns_none(lambda: net_cls(), (2, 1, 28, 28)) and unanswered(None):
            return NOT_YET
        if not isinstance(block_cls, type) or _returns_none(lambda: block_cls(8, 8, 1), (1, 8, 6, 6)):
            return failed("MyResNet is assembled from your MyBlock: finish exercise 2 first.")
        if _is_reference(block_cls, refs):
            return failed(
                "assemble MyResNet from your own MyBlock (exercise 2), not from the lesson's ResidualBlock."
            )
        cases = _NET_CASES + (_NET_HIDDEN if hidden else [])
        for widths, classes, cin, sizes in cases:
            problem = _net_case(net_cls, block_cls, widths, classes, cin, sizes, refs)
            if problem is not None:
                return failed(problem)
    return passed(
        f"{len(cases)} configuration(s): the right shapes at two image sizes, three stages of your block, each "
        "the identity at initialisation, and gradients that reach the first layer and the zeroed scales."
    )


# ---------------------------------------------------------------------------------------------------------
# Exercise 4: a target accuracy within a time budget
# ---------------------------------------------------------------------------------------------------------
def _device_of(loader: Iterable) -> torch.device:
    images, _ = next(iter(loader))
    return images.device


def _run(
    net: nn.Module, data: Any, epochs: int, lr: float, seconds: float, precision: str
) -> tuple[str | None, float, float]:
    """Train ``net`` with the notebook's recipe; return (a problem or None, seconds taken, final validation accuracy)."""
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * len(data.train)
    )
    start, acc = time.perf_counter(), 0.0
    for epoch in range(1, epochs + 1):
        train_one_epoch(
            net, data.train, optimizer=optimizer, loss_fn=loss_fn, scheduler=scheduler, precision=precision
        )
        acc = evaluate(net, data.val, precision=precision)["acc"]
        took = time.perf_counter() - start
        if took > seconds and epoch < epochs:
            return (
                f"the time ran out after epoch {epoch} of {epochs} ({took:.1f} s, budget {seconds:.1f} s; "
                f"validation accuracy then {acc:.1%}). Fewer epochs, or a cheaper network.",
                took,
                acc,
            )
    return None, time.perf_counter() - start, acc


# The lesson's configuration (its setup cell; a test holds the two equal): (smoke run, full lesson).
_CONFIG = {
    "TRAIN_SUBSET": (1024, 20_000),
    "VAL_FRACTION": (0.25, 0.25),
    "BATCH_SIZE": (128, 128),
    "EPOCHS": (1, 3),
    "TARGET_ACC": (0.3, 0.90),
}


def _config(name: str) -> Any:
    import course_utils as cu

    smoke, full = _CONFIG[name]
    return smoke if cu.SMOKE else full


def _lesson_data(seed: int) -> Any:
    """The lesson's data, loaded by the check itself with the lesson's settings (as the notebook's load_data does):
    whatever the notebook's names hold now, the exercise is judged on these images."""
    import course_utils as cu

    return cu.data.fashion_mnist(
        batch_size=_config("BATCH_SIZE"),
        subset=_config("TRAIN_SUBSET"),
        val_fraction=_config("VAL_FRACTION"),
        seed=seed,
    )


def _notebook_load_data() -> Any:
    """The code of ``load_data`` as the lesson's notebook defines it, or None where the notebook is not at hand."""
    try:
        import json

        from course_machinery.lessons import NOTEBOOKS

        (path,) = sorted(NOTEBOOKS.glob("06_*.ipynb"))
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code" or "def load_data" not in "".join(cell["source"]):
                continue
            for node in ast.parse("".join(cell["source"])).body:
                if isinstance(node, ast.FunctionDef) and node.name == "load_data":
                    module = ast.Module(body=[node], type_ignores=[])
                    namespace: dict[str, Any] = {}
                    exec(compile(module, "<load_data>", "exec", dont_inherit=True), namespace)
                    return namespace["load_data"].__code__
    except Exception:  # an installed copy without the notebooks: the check's own data is enough
        return None
    return None


def _epoch_estimate(data: Any, precision: str) -> float:
    """Seconds of one training epoch of the lesson's SimpleCNN on ``data``, from a few timed steps: the budget is
    4 times SimpleCNN's EPOCHS epochs, so a budget far above this estimate is not the lesson's."""
    import course_utils as cu

    device = _device_of(data.train)
    with torch.random.fork_rng(devices=[]):
        net = cu.SimpleCNN().to(device)
    optimizer = torch.optim.Adam(net.parameters())
    times = []
    for i, (images, labels) in enumerate(data.train):
        if i > 3:
            break
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            outputs = net(images.to(device))
        loss = F.cross_entropy(outputs.float(), labels.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i > 0:  # the first step pays one-off costs
            times.append(time.perf_counter() - start)
    step = max(times) if times else 1.0
    return step * (len(data.train) + len(data.val) / 2)


def time_to_accuracy(
    model: nn.Module | None,
    load_data: Callable[[int], Any],
    *,
    epochs: Any,
    lr: Any,
    target: float,
    seconds: float,
    precision: str = "fp32",
    seed: int = 0,
    hidden: bool = False,
) -> Verdict:
    """Train a copy of the learner's untrained ``model`` and check it reaches ``target`` within ``seconds``.

    The recipe is the notebook's: Adam with a one-cycle schedule peaking at ``lr``, cross-entropy, ``epochs``
    passes over the training data of ``load_data(seed)``. The time counts training and the validation after every
    epoch. With ``hidden=True`` it is also trained on another seed's split and batch order. A network that already
    reaches the target before training (a trained one) is refused. The learner's model is left untouched.

    Args:
        model: A freshly built, untrained network.
        load_data: The notebook's ``load_data(seed)``: a bundle with ``.train`` and ``.val`` loaders.
        epochs: Passes over the training data (a whole number).
        lr: Peak learning rate of the one-cycle schedule.
        target: Validation accuracy to reach, as a fraction.
        seconds: Time budget in seconds.
        precision: ``"fp32"`` or ``"bf16"``, as in ``cu.fit``.
        seed: The seed of the visible run.
        hidden: Train once more, on another seed's data.

    Returns:
        A true Verdict when every run finished within the budget at or above the target.
    """
    if unanswered(model) or unanswered(epochs) or unanswered(lr):
        return NOT_YET
    if not isinstance(model, nn.Module) or not any(p.requires_grad for p in model.parameters()):
        return failed("my_model should be a freshly built network (an nn.Module with trainable parameters).")
    n_epochs, peak = number(epochs), number(lr)
    if n_epochs is None or n_epochs < 1 or n_epochs != int(n_epochs):
        return failed(f"my_epochs should be a whole number of at least 1; you gave {epochs!r}.")
    if peak is None or not 0 < peak < 1:
        return failed(f"my_lr should be a positive number below 1 (e.g. 0.003); you gave {lr!r}.")
    lesson_code = _notebook_load_data()
    given_code = getattr(load_data, "__code__", None)
    if lesson_code is not None and (given_code is None or _code_key(given_code) != _code_key(lesson_code)):
        return failed(
            "pass the notebook's own load_data (run its cell again): the exercise is judged on the lesson's data."
        )
    target = max(number(target) or 0.0, _config("TARGET_ACC"))  # the lesson's target, at the least
    budget = number(seconds)
    if budget is None or not math.isfinite(budget) or budget <= 0:
        return failed("the budget (seconds) should be the notebook's: run the cell that computes it again.")
    runs = [seed, seed + 1] if hidden else [seed]
    for run_seed in runs:
        try:
            data = _lesson_data(run_seed)
            if run_seed == runs[0]:
                # The lesson's budget is 4 x SimpleCNN's EPOCHS epochs, measured in the notebook while the machine
                # may have been busier or quieter than now (and, in smoke mode, mostly fixed costs): only a budget
                # ten times beyond that is refused, which still refuses an invented one (inf, 1e6).
                cap = 60.0 + 40 * _config("EPOCHS") * _epoch_estimate(data, precision)
                if budget > cap:
                    return failed(
                        f"the budget of {budget:.1f} s is far more than 4 times SimpleCNN's time on this machine: "
                        "run the notebook's budget cell again, without changing it."
                    )
        except Exception as exc:  # noqa: BLE001  # data that cannot be loaded: one line, never an exception
            return failed(f"loading the lesson's data raised {_first_line(exc)}")
        seconds = budget
        net = copy.deepcopy(model).to(_device_of(data.train))  # the learner's model stays untrained
        try:
            before = evaluate(net, data.val, precision=precision)["acc"]
            if before >= min(0.5, target):
                return failed(
                    f"my_model already scores {before:.1%} before any training: build a fresh network, the "
                    "exercise is to choose what reaches the target in the time."
                )
            problem, took, acc = _run(net, data, int(n_epochs), float(peak), seconds, precision)
        except Exception as exc:  # learner code (a shape error, a NaN loss at too high an lr): report
            return failed(f"training raised {_first_line(exc)}")
        if problem is not None:
            return failed(problem)
        if took > seconds:
            return failed(
                f"{int(n_epochs)} epoch(s) took {took:.1f} s, over the {seconds:.1f} s budget (validation "
                f"accuracy {acc:.1%}). Fewer epochs, or a cheaper network."
            )
        if acc < target:
            return failed(
                f"validation accuracy {acc:.1%} after {int(n_epochs)} epoch(s) ({took:.1f} s) is below the "
                f"{target:.1%} target. Try another lr, a wider or deeper network, or the blocks of this notebook."
            )
    return passed(
        f"validation accuracy {acc:.1%} in {took:.1f} s: the {target:.1%} target within {seconds:.1f} s."
    )
