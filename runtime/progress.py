"""What a training run shows: a live progress bar, per-epoch lines, a summary and curves.

The bar is hand-written (one line on stderr, redrawn in place on a terminal; on a
pipe only the per-epoch lines appear), so nnc needs no progress-bar dependency.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class EpochRecord:
    epoch: int
    step: int  # optimizer steps so far
    loss: float  # mean of the batch losses of this epoch
    accuracy: float | None  # on the training examples, after the epoch
    val_loss: float | None
    val_accuracy: float | None
    lr: float | None
    seconds: float  # since the start of training

    def as_dict(self) -> dict:
        """The record as JSON can hold it: a non-finite number (a diverging validation loss) is
        null, as JSON has no Infinity or NaN (json.dumps would write them, and strict readers refuse)."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in self.__dict__.items()}


def _fmt(v: float | None, width: int = 7) -> str:
    if v is None:
        return "-".rjust(width)
    return f"{v:{width}.4f}" if abs(v) < 1e4 else f"{v:{width}.3g}"


class Progress:
    """A per-epoch bar on stderr: `epoch 3/30 [#####-----] 21/45 loss 0.1234`."""

    WIDTH = 24

    def __init__(self, epochs: int, steps_per_epoch: int, *, quiet: bool = False, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.epochs, self.steps = epochs, steps_per_epoch
        self.quiet = quiet
        self.live = not quiet and self.stream.isatty()
        self.every = max(1, math.ceil(epochs / 30))  # at most about 30 permanent lines
        self.last_draw = 0.0
        self.drawn = False

    def step(self, epoch: int, done: int, loss: float) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if now - self.last_draw < 0.1 and done < self.steps:
            return
        self.last_draw = now
        filled = int(self.WIDTH * done / max(1, self.steps))
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self._draw(f"epoch {epoch:>{len(str(self.epochs))}}/{self.epochs} [{bar}] {done}/{self.steps} "
                   f"loss {loss:.4f}")

    def epoch(self, record: EpochRecord, classifier: bool) -> None:
        if self.quiet:
            return
        if record.epoch % self.every and record.epoch != self.epochs:
            return
        text = f"epoch {record.epoch:>{len(str(self.epochs))}}/{self.epochs}  loss {_fmt(record.loss)}"
        if classifier:
            text += f"  acc {_fmt(record.accuracy, 6)}"
        if record.val_loss is not None:
            text += f"  val_loss {_fmt(record.val_loss)}"
            if classifier:
                text += f"  val_acc {_fmt(record.val_accuracy, 6)}"
        text += f"  ({record.seconds:.1f}s)"
        self._draw(text)
        self.stream.write("\n")
        self.drawn = False
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line that must not be drawn over (warnings, the nan stop)."""
        if self.drawn:
            self.stream.write("\n")
            self.drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def status(self, text: str) -> None:
        """A passing state (`round 3/15`), redrawn in place on a terminal; nothing on a pipe."""
        if self.live:
            self._draw(text)

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.drawn = False
        self.stream.flush()

    def _draw(self, text: str) -> None:
        if self.live:
            self.stream.write("\r" + text + "\x1b[K")
            self.drawn = True
        else:
            self.stream.write(text)
        self.stream.flush()


@dataclass
class Summary:
    spec: str
    data: str
    train_examples: int
    val_examples: int
    epochs: int
    steps: int
    seconds: float
    final: EpochRecord | None
    classifier: bool
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        rate = self.steps / self.seconds if self.seconds > 0 else float("inf")
        head = (f"trained {self.spec} on {self.data}: {self.train_examples} training and "
                f"{self.val_examples} validation examples, {_count(self.epochs, 'epoch')}, {_count(self.steps, 'step')} "
                f"in {self.seconds:.2f} s ({rate:.0f} steps/s)")
        lines = [head]
        r = self.final
        if r is not None:
            head = f"{'':12}{'loss':>10}" + (f"{'accuracy':>10}" if self.classifier else "")
            lines.append(head)
            lines.append(f"{'train':12}{_fmt(r.loss, 10)}" + (_fmt(r.accuracy, 10) if self.classifier else ""))
            if r.val_loss is not None:
                lines.append(f"{'validation':12}{_fmt(r.val_loss, 10)}"
                             + (_fmt(r.val_accuracy, 10) if self.classifier else ""))
        return "\n".join(lines + self.notes)


def plot_curves(history: list[EpochRecord], path: str, title: str) -> None:
    """Loss (and accuracy, when there is one) per epoch, train and validation, to an image file."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    has_acc = any(r.accuracy is not None for r in history)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 5, 4), squeeze=False)
    _panel(axes[0][0], history, "loss", "val_loss")
    if has_acc:
        _panel(axes[0][1], history, "accuracy", "val_accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _panel(ax, history: list[EpochRecord], train_key: str, val_key: str) -> None:
    epochs = [r.epoch for r in history]
    ax.plot(epochs, [getattr(r, train_key) for r in history], label="train")
    if any(getattr(r, val_key) is not None for r in history):
        ax.plot(epochs, [getattr(r, val_key) for r in history], label="validation")
    ax.set(xlabel="epoch", ylabel=train_key, title=train_key)
    ax.legend()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
