"""Checks for notebook 06's exercises: a dense network's size, a dense network that refuses a wrong shape, the
bottleneck's saving, and a network trained to a target accuracy within a time budget.

Each check prints one ✅ line or one ❌ hint and returns a Verdict; ``hidden=True`` (through ``grade``) tries more
inputs. A prediction is accepted only as a value typed in (``typed_as_literal``), never one computed by code.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import itertools
import math
import random
import re
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from course_utils import evaluate, train_one_epoch
from course_utils._models import count_parameters

from ._feedback import (
    NOT_YET,
    Verdict,
    failed,
    grade,
    invoke,
    number,
    passed,
    raised,
    same,
    typed_as_literal,
    unanswered,
    watch_calls,
)

__all__ = ["grade", "mlp_parameters", "flat_net", "bottleneck_ratio", "time_to_accuracy"]


# ---------------------------------------------------------------------------------------------------------
# Helpers: one-line errors, code that does the same, the learner's random state left alone
# ---------------------------------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _code_key(code: types.CodeType) -> tuple:
    """What a function's code does, without its names of locals or line numbers: a copied function has the same."""
    consts = tuple(_code_key(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts)
    return (code.co_code, code.co_names, consts)


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


def _fresh_rng() -> random.Random:
    """Draws made anew on every run (seeded by the operating system): hidden cases no table of answers covers."""
    return random.Random(random.SystemRandom().getrandbits(64))


# ---------------------------------------------------------------------------------------------------------
# Predicting a count of parameters (this lesson's exercise 1; notebook 07's exercise 2 uses it too)
# ---------------------------------------------------------------------------------------------------------
_WRONG_COUNTS: dict[str, set[int]] = {}  # the distinct wrong counts tried in this kernel, per exercise
_ROUGH_HINTS = 4  # beyond this many wrong counts, no more "how far off": a loop would narrow the answer down


def _explain(delta: int, mistakes: Sequence[tuple[int, str]]) -> str | None:
    """The usual mistake (or two of them together) that makes a count ``delta`` off, or None."""
    for size in (1, 2):
        for combo in itertools.combinations(mistakes, size):
            if sum(d for d, _ in combo) == delta:
                return "; and ".join(dict.fromkeys(hint for _, hint in combo))
    return None


def _count_prediction(
    answer: Any,
    name: str,
    expected: Callable[[], int],
    mistakes: Callable[[], Sequence[tuple[int, str]]],
    idea: str,
    praise: str,
    source: str | None = None,
) -> Verdict:
    """Judge a predicted number of parameters ``answer`` (the learner's ``name``), typed as a value.

    ``expected()`` and ``mistakes()`` (pairs of how far off a usual mistake makes the count, and what to say about
    it) are computed once the answer is in. A wrong count gets the mistake that explains it, with how far off it
    is; any other wrong count, for the first few tried, only how far off it is in per cent and in which direction.
    """
    if unanswered(answer):
        return NOT_YET
    if typed_as_literal(name, source) is False:
        return failed(
            f"type `{name}` as a number you worked out (arithmetic on the layer sizes is fine), not as the result "
            "of code that builds the model or counts its parameters: the exercise asks you to work it out first."
        )
    value = number(answer)
    if value is None or isinstance(answer, torch.Tensor):
        return failed(f"`{name}` should be a single number: a count of parameters.")
    if not math.isfinite(value) or value != int(value) or value < 0:
        return failed("a count of parameters is a whole number, 0 or more.")
    right, given = expected(), int(value)
    if given == right:
        return passed(praise)
    delta = given - right
    way = "too many" if delta > 0 else "too few"
    known = _explain(delta, mistakes())
    if known is not None:
        return failed(f"you are off by {abs(delta):,} ({way}): {known}")
    tried = _WRONG_COUNTS.setdefault(name, set())
    tried.add(given)
    if len(tried) > _ROUGH_HINTS:
        return failed(f"not this count yet. {idea}")
    share = abs(delta) / right
    rough = "less than 1%" if share < 0.01 else f"about {share:.0%}"
    return failed(f"your count is {rough} {way}. {idea}")


# ---------------------------------------------------------------------------------------------------------
# Exercise 1: predict the size of MLP(hidden=(256, 128))
# ---------------------------------------------------------------------------------------------------------
_MLP_SIZES = (
    28 * 28,
    256,
    128,
    10,
)  # the lesson's MLP(hidden=(256, 128)): input pixels, hidden widths, classes


def _mlp_count() -> int:
    layers = list(itertools.pairwise(_MLP_SIZES))
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in layers)  # weights + biases of each Linear


def _mlp_mistakes() -> list[tuple[int, str]]:
    layers = list(itertools.pairwise(_MLP_SIZES))
    biases = sum(fan_out for _, fan_out in layers)
    arrows = " → ".join(map(str, _MLP_SIZES))
    mistakes = [
        (-biases, "did you leave out the biases? Every Linear layer has one per output unit."),
        (
            sum(fan_in for fan_in, _ in layers) - biases,
            "a Linear layer has one bias per output unit, not one per input.",
        ),
        (_MLP_SIZES[0], "the input pixels are no layer: they have no parameters of their own."),
    ]
    for fan_in, fan_out in layers:
        mistakes += [
            (
                -(fan_in * fan_out + fan_out),
                f"a whole layer is missing: count all {len(layers)} Linear layers, {arrows}.",
            ),
            (-fan_out, "one layer's biases are missing: every Linear layer has one per output unit."),
            (-fan_in * fan_out, "one layer's weights are missing: a Linear layer has n_in × n_out of them."),
        ]
    return mistakes


def mlp_parameters(answer: Any, *, hidden: bool = False, source: str | None = None) -> Verdict:
    """Check the predicted number of parameters of the lesson's ``MLP(hidden=(256, 128))``, typed as a value.

    A wrong count that a usual mistake explains (biases left out, a layer left out, a bias per input) is told
    which, and by how much it is off; any other, how far off it is in per cent. A count computed by code (a
    function, a model's parameters) is refused.

    Args:
        answer: The learner's ``mlp_params``.
        hidden: nbgrader's hidden test (the question is the same; it judges the same way).
        source: The code that assigned ``mlp_params`` (default: the kernel's input history).

    Returns:
        A true Verdict when the count is right and was typed as a value.
    """
    return _count_prediction(
        answer,
        "mlp_params",
        _mlp_count,
        _mlp_mistakes,
        "Each Linear(n_in, n_out) has n_in × n_out weights and n_out biases; add them up for every layer.",
        "weights and biases of all three layers. Most of them sit in the first layer, one weight per "
        "pixel and hidden unit.",
        source,
    )


# ---------------------------------------------------------------------------------------------------------
# Exercise 2: a dense network that refuses a wrong shape
# ---------------------------------------------------------------------------------------------------------
_IMAGE = (1, 28, 28)
_GREY_BATCHES = [1, 5, 8]  # batch sizes of grey 28x28 images FlatNet must accept
# Wrong batches: colour, grey of another size with the same 784 values per image, one image without its batch
# dimension, images already flattened.
_WRONG_BATCHES = [(5, 3, 28, 28), (4, 1, 14, 56), (1, 28, 28), (6, 784)]
_WRONG_HIDDEN = [
    (3, 4, 14, 14),  # 4 x 196 = 784 values per image
    (2, 1, 56, 56),
    (2, 1, 1, 28, 28),
    (784,),
    (1, 1, 784, 1),
    (7, 1, 28, 27),
    (8, 2, 28, 28),
    (1, 28, 28, 1),
]


def _draw_flat_cases(rng: random.Random) -> tuple[list[int], list[tuple[int, ...]]]:
    """Batch sizes to accept and shapes to refuse, drawn anew: other channel counts and other sides of 784 pixels."""
    sides = [(h, 784 // h) for h in (2, 4, 7, 8, 14, 16, 49, 56, 98, 112, 196) if 784 % h == 0]
    grey = [rng.randint(2, 64) for _ in range(2)]
    wrong = [
        (rng.randint(1, 9), rng.choice([2, 3, 4]), 28, 28),
        (rng.randint(1, 9), 1, *rng.choice(sides)),
        (rng.randint(2, 9), rng.randint(1, 3) * 784),
    ]
    return grey, wrong


def _shows_shape(message: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    """Whether an error message names the given shape and the expected one: their numbers appear, each in order
    (``(5, 3, 28, 28)``, ``torch.Size([5, 3, 28, 28])``, ``1x28x28`` all count), at different places."""
    numbers = [int(n) for n in re.findall(r"\d+", message)]

    def places(seq: tuple[int, ...]) -> list[range]:
        n = len(seq)
        return [range(i, i + n) for i in range(len(numbers) - n + 1) if tuple(numbers[i : i + n]) == seq]

    return any(not set(a) & set(b) for a in places(shape) for b in places(expected))


def _flat_case_grey(net: nn.Module, batch: int) -> str | None:
    """What is wrong with ``net`` on a grey batch of ``batch`` 28x28 images, in one sentence; None if right."""
    x = torch.randn(batch, *_IMAGE)
    given, weight, bias = x.clone(), net.fc.weight.detach().clone(), net.fc.bias.detach().clone()
    with torch.no_grad():
        out, error = invoke(lambda: net(x))
    shape = tuple(given.shape)
    if error is not None:
        return (
            f"FlatNet raised {_first_line(error)} for a batch of shape {shape}, grey 28x28 images, which it "
            "should accept."
        )
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (batch, 10):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return f"for a batch of shape {shape} FlatNet returned {got}: it should return one row of 10 scores per image."
    if not (torch.equal(net.fc.weight, weight) and torch.equal(net.fc.bias, bias)):
        return "FlatNet's forward changes the weights of its layer fc: it should only use them."
    with torch.no_grad():
        expected = F.linear(given.flatten(1), weight, bias)  # the layer fc on each flattened image
    if not torch.allclose(out, expected, rtol=1e-4, atol=1e-5):
        return (
            f"for a batch of shape {shape} FlatNet's scores are not those of its own layer fc on each image's 784 "
            "pixels: keep the layer and its weights, and flatten each image whole."
        )
    return None


def _flat_case_wrong(net: nn.Module, shape: tuple[int, ...]) -> str | None:
    """What is wrong with ``net`` on a batch of the wrong ``shape``, in one sentence; None if it raises as asked."""
    x = torch.randn(shape)
    with torch.no_grad():
        out, error = invoke(lambda: net(x))
    if error is None:
        got = f"returned {tuple(out.shape)}" if isinstance(out, torch.Tensor) else "raised no error"
        return (
            f"a batch of shape {shape} is no batch of grey 28x28 images, yet FlatNet {got}. view(-1, 784) only "
            "checks that the number of values divides by 784: check the shape of the batch before flattening, "
            "and raise a ValueError when it is not the one FlatNet expects."
        )
    if not isinstance(error, ValueError):
        return (
            f"for a batch of shape {shape} FlatNet raised {_first_line(error)}. Check the shape before the layer "
            "runs, and raise a ValueError that says which shape FlatNet expects and which it got."
        )
    if not _shows_shape(str(error), shape, _IMAGE):
        return (
            f"FlatNet raised a ValueError for a batch of shape {shape}, but its message should say both the shape "
            f"it was given, {shape}, and the shape it expects: (batch, {', '.join(map(str, _IMAGE))})."
        )
    return None


def flat_net(net_cls: Any, *, hidden: bool = False) -> Verdict:
    """Check the repaired ``FlatNet``: its layer ``fc`` on each flattened image for grey ``(batch, 1, 28, 28)``
    batches, and a ``ValueError`` naming the expected and the given shape for every other input.

    Grey batches of several sizes (one image included) must give the scores of the instance's own ``fc`` on each
    image's 784 pixels; colour batches, grey images of another size with the same 784 values, one image without
    its batch dimension, flattened images and (hidden) more, drawn anew on every run, must raise a ValueError.
    An answer that always raises, or raises another exception, is refused.

    Args:
        net_cls: The learner's ``FlatNet`` class.
        hidden: Try more batch sizes and wrong shapes.

    Returns:
        A true Verdict when every batch gives the scores or the error it should.
    """
    if unanswered(net_cls):
        return NOT_YET
    if isinstance(net_cls, nn.Module) or not callable(net_cls):
        return failed(
            "pass the class itself (FlatNet), not an instance: the check builds networks of its own."
        )
    grey, wrong = list(_GREY_BATCHES), list(_WRONG_BATCHES)
    if hidden:
        drawn_grey, drawn_wrong = _draw_flat_cases(_fresh_rng())
        grey += drawn_grey
        wrong += _WRONG_HIDDEN + drawn_wrong
    with _small_tensors():
        net, error = invoke(net_cls)
        if error is not None:
            return failed(f"FlatNet() raised {_first_line(error)}; fix only its forward.")
        fc = getattr(net, "fc", None)
        if not isinstance(net, nn.Module) or not isinstance(fc, nn.Linear) or fc.bias is None:
            return failed(
                "keep FlatNet as it was built, an nn.Module with its layer self.fc = nn.Linear(28 * 28, 10)."
            )
        if (fc.in_features, fc.out_features) != (28 * 28, 10):
            return failed("keep FlatNet's layer as it is, nn.Linear(28 * 28, 10): repair its forward only.")
        net.eval()
        for batch in grey:
            problem = _flat_case_grey(net, batch)
            if problem is not None:
                return failed(problem)
        for shape in wrong:
            problem = _flat_case_wrong(net, shape)
            if problem is not None:
                return failed(problem)
    return passed(
        f"one row of scores per image for {len(grey)} grey batches, and a ValueError that names both shapes for "
        f"all {len(wrong)} wrong ones: a shape error can no longer hide in the batch dimension."
    )


# ---------------------------------------------------------------------------------------------------------
# Exercise 3: what a bottleneck saves
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
    from tqdm.auto import tqdm

    start, acc = time.perf_counter(), 0.0
    # A bar over the epochs: the check trains for as long as the learner's run takes (a minute or more).
    for epoch in tqdm(range(1, epochs + 1), desc="the check trains your network", unit="epoch", leave=False):
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
    "TARGET_ACC": (0.3, 0.895),
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
    epoch. It trains on the split and batch order of ``seed + 1``, not the first seed's that the notebook's table
    shows, so a setting tuned to one split's luck does not pass by it. It trains once per answer: with
    ``hidden=True`` right after the visible check passed the same answer (nbgrader runs both in one cell), that run
    is the verdict, so a lesson's full run and a grading run pay for one training, not two. A network that already
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
    key = (id(model), _weights_key(model), int(n_epochs), float(peak), budget, precision, target, seed)
    if hidden and key in _PASSED:
        return Verdict(True)  # the visible check just trained this very answer and it passed
    runs = [seed + 1]
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
                f"{target:.1%} target. Try another lr, more epochs if the budget allows, or another network (cu.ImprovedCNN(), "
                "or one of your own)."
            )
    _PASSED.add(key)
    return passed(
        f"validation accuracy {acc:.1%} in {took:.1f} s: the {target:.1%} target within {seconds:.1f} s."
    )


_PASSED: set[tuple] = (
    set()
)  # answers to time_to_accuracy that passed in this kernel (one training per answer)


def _weights_key(model: Any) -> tuple:
    """A fingerprint of a network's weights: an answer changed after it passed is trained again."""
    if not isinstance(model, nn.Module):
        return ()
    with torch.no_grad():
        return tuple(round(float(p.double().sum()), 6) for p in model.parameters())
