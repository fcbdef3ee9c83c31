"""Training progress on the terminal: a rich bar with step, loss and tokens/s.

A ``transformers.TrainerCallback`` (works for SFTTrainer, DPOTrainer and any HF Trainer). Token
counts come from ``state.num_input_tokens_seen`` (``include_num_input_tokens_seen="non_padding"``),
which the Trainer checkpoints, so after ``--resume`` the rate covers this session only.
The class is built on first use so importing this module does not import transformers.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["progress_callback", "stop_after", "time_limit"]


def progress_callback(label: str = "training", *, console: Any = None) -> Any:
    """A TrainerCallback drawing a rich progress bar on stderr (or ``console``)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        """Bar + ``loss`` (last logged) + ``tok/s`` (this session's non-padding input tokens per second)."""

        def __init__(self) -> None:
            self.progress: Progress | None = None
            self.task: Any = None
            self.loss: float | None = None
            self.t0 = 0.0
            self.tokens0 = 0
            self.step0 = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} tok/s"),
                TimeElapsedColumn(), TimeRemainingColumn(),
                console=console or Console(stderr=True, highlight=False), transient=False)
            self.progress.start()
            self.task = self.progress.add_task(label, total=state.max_steps, completed=state.global_step,
                                               loss="—", rate="—")
            self.t0, self.tokens0, self.step0 = time.perf_counter(), state.num_input_tokens_seen, state.global_step

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kw: Any) -> None:
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])
                self._draw(state)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._draw(state)

        def _draw(self, state: Any) -> None:
            if self.progress is None:
                return
            dt = time.perf_counter() - self.t0
            rate = (state.num_input_tokens_seen - self.tokens0) / dt if dt > 0 else 0.0
            self.progress.update(self.task, completed=state.global_step,
                                 loss="—" if self.loss is None else f"{self.loss:.3f}", rate=f"{rate:.0f}")

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    return RichProgress()


def stop_after(step: int, *, crash: bool = False) -> Any:
    """A callback that ends training at ``step``: cleanly, or with ``RuntimeError`` (``crash=True``)
    to simulate a killed run in resume tests and demos."""
    from transformers import TrainerCallback

    class _Stop(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if state.global_step >= step:
                if crash:
                    raise RuntimeError(f"simulated crash after step {state.global_step}")
                control.should_training_stop = True
            return control

    return _Stop()


def time_limit(seconds: float) -> Any:
    """A callback that stops training cleanly after the first step ending past ``seconds`` of training."""
    from transformers import TrainerCallback

    class _Limit(TrainerCallback):
        t0 = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if time.perf_counter() - self.t0 >= seconds:
                control.should_training_stop = True
            return control

    return _Limit()
