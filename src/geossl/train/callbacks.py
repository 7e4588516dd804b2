"""Training callbacks: images/s and an overall ETA in the progress bar."""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class Throughput(L.Callback):
    """Logs ``train/img_per_s``: images (all processes, one per sample, not per view) per second.

    Measured over the whole step (views, forward, backward, optimiser), smoothed over 20 steps.
    """

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self._times: list[float] = []
        self._sizes: list[int] = []
        self._start = 0.0
        self.fit_start: float | None = None
        self.steps_done = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.fit_start = time.perf_counter()
        self.steps_done = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._times.append(time.perf_counter() - self._start)
        self._sizes.append(batch[0].shape[0] * trainer.world_size)
        self._times, self._sizes = self._times[-self.window :], self._sizes[-self.window :]
        self.steps_done += 1
        pl_module.log("train/img_per_s", sum(self._sizes) / max(sum(self._times), 1e-9), prog_bar=True, on_step=True, on_epoch=False)


class ETAProgressBar(TQDMProgressBar):
    """The TQDM bar with the remaining time of the whole run (not only the epoch)."""

    #: Logged name → name shown in the bar (the bar has little room).
    SHORT_NAMES = {"train/loss_step": "loss", "train/img_per_s": "img/s", "val/knn_top1": "knn"}

    def __init__(self, throughput: Throughput, refresh_rate: int = 1) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self.throughput = throughput

    def get_metrics(self, trainer, pl_module):
        raw = super().get_metrics(trainer, pl_module)
        metrics = {short: raw[key] for key, short in self.SHORT_NAMES.items() if key in raw}
        t = self.throughput
        if t.fit_start is not None and t.steps_done > 0:
            elapsed = time.perf_counter() - t.fit_start
            remaining_steps = trainer.estimated_stepping_batches * trainer.accumulate_grad_batches - (
                trainer.fit_loop.total_batch_idx + 1
            )
            seconds = max(0.0, remaining_steps * elapsed / t.steps_done)
            metrics["eta"] = time.strftime("%H:%M:%S", time.gmtime(seconds))
        return metrics

