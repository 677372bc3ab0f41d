"""The console of ``cld-hf run``: one progress display for the whole job, and quiet libraries.

:class:`JobProgress` is a single tqdm bar over every training of the run (the proxy with its
loss sweeps, each coreset target run, the full-set runs), measured in training steps, so its
ETA covers the whole job; its description names the phase and the run (``[3/9] target: cld 10%
seed 0``). :func:`quiet_libraries` turns off, for the duration of the run, the progress bars and
info logs of ``datasets``, ``transformers`` and ``huggingface_hub`` that would otherwise be
printed around it, and restores them afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys

__all__ = ["JobProgress", "quiet_libraries", "training_units"]


def training_units(num_samples: int, *, epochs: int, batch_size: int) -> int:
    """Training steps of ``epochs`` over ``num_samples`` (a last batch of one is dropped, as
    :func:`~cld_hf.app.training.train_and_evaluate` does).

    Examples
    --------
    >>> training_units(130, epochs=2, batch_size=64), training_units(129, epochs=2, batch_size=64)
    (6, 4)
    """
    steps = num_samples // batch_size if num_samples % batch_size == 1 else math.ceil(
        num_samples / batch_size)
    return max(1, steps) * epochs


class JobProgress:
    """One progress display for a job of ``num_runs`` trainings, ``total`` units (training
    steps) long.

    Forward-only passes (the loss sweeps, the test evaluations) count a third of a training
    step per batch-size worth of samples. On a terminal it is one tqdm bar, its description the
    phase and the run (log records print above it, :meth:`logging_above`); elsewhere (a log
    file, a pipe) one line per phase, with the share done and the time left. ``enabled=False``
    shows nothing.

    Examples
    --------
    >>> import io
    >>> log = io.StringIO()
    >>> progress = JobProgress(10, num_runs=2, file=log)
    >>> progress.start_run("proxy"); progress.advance(5); progress.start_run("target")
    >>> progress.close()
    >>> print(log.getvalue().splitlines()[1])  # doctest: +ELLIPSIS
    cld-hf run: [2/2] target (50% done, ... left)
    """

    def __init__(self, total: float, *, num_runs: int, enabled: bool = True, file=None,
                 interactive: bool | None = None):
        import time

        from tqdm.auto import tqdm

        self.file = sys.stderr if file is None else file
        if interactive is None:
            interactive = hasattr(self.file, "isatty") and self.file.isatty()
        self.interactive = bool(interactive)
        self.enabled = bool(enabled)
        self.num_runs = num_runs
        self.run = 0
        self.description = "preparing"
        self._started = time.perf_counter()
        width = 0
        if self.interactive:
            try:
                width = os.get_terminal_size(self.file.fileno()).columns
            except (AttributeError, OSError, ValueError):
                width = 0
        # A terminal that reports no width (some ptys) would get a bar cut to nothing.
        self._bar = tqdm(total=max(float(total), 1.0), file=self.file, leave=True,
                         desc=self.description, dynamic_ncols=width > 0,
                         ncols=None if width > 0 else 100, nrows=None if width > 0 else 24,
                         mininterval=0.2,
                         disable=not (self.enabled and self.interactive),
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")

    @property
    def fraction_done(self) -> float:
        """Share of the job done, in [0, 1]."""
        return min(1.0, self._bar.n / self._bar.total)

    def start_run(self, label: str) -> None:
        """The next training: ``[i/n] label``."""
        self.run += 1
        self.phase(f"[{self.run}/{self.num_runs}] {label}")

    def phase(self, text: str) -> None:
        """Show ``text`` as what the job is doing now."""
        import time

        self.description = text
        if not self.enabled:
            return
        if self.interactive:
            self._bar.set_description_str(text)
            return
        done = self.fraction_done
        elapsed = time.perf_counter() - self._started
        left = f"{_clock(elapsed * (1 - done) / done)} left" if done > 0 else "time left unknown"
        print(f"cld-hf run: {text} ({100 * done:.0f}% done, {left})", file=self.file,
              flush=True)

    def advance(self, units: float) -> None:
        """Count ``units`` of work done."""
        units = min(float(units), self._bar.total - self._bar.n)
        if units > 0:
            if self._bar.disable:
                self._bar.n += units  # tqdm does not count when disabled
            else:
                self._bar.update(units)

    def callback(self, *, count_steps: bool = True, sweep_units: float = 0.0,
                 record_initial: bool = False, every_n_epochs: int = 1):
        """A ``TrainerCallback`` that advances the bar each training step (``count_steps``) and,
        with ``sweep_units``, after each recording sweep (put it after the ``CLDCallback``)."""
        from transformers import TrainerCallback

        progress = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                if sweep_units and record_initial and state.global_step == 0:
                    progress.advance(sweep_units)

            def on_step_end(self, args, state, control, **kwargs):
                if count_steps:
                    progress.advance(1)

            def on_epoch_end(self, args, state, control, **kwargs):
                if sweep_units and math.ceil(state.epoch - 1e-9) % every_n_epochs == 0:
                    progress.advance(sweep_units)

        return _Callback()

    def close(self, *, done: bool = True) -> None:
        """End the display (the bar filled when ``done``)."""
        import time

        if done:
            self.advance(self._bar.total - self._bar.n)
            self._bar.set_description_str("done", refresh=False)
        self._bar.close()
        if done and self.enabled and not self.interactive:
            elapsed = time.perf_counter() - self._started
            print(f"cld-hf run: done in {_clock(elapsed)}", file=self.file, flush=True)

    @contextlib.contextmanager
    def logging_above(self):
        """Log records are printed above the bar instead of through it."""
        if self._bar.disable:
            yield
            return
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm(loggers=[logging.getLogger()]):
            yield


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:02d}:{seconds % 60:02d}"


@contextlib.contextmanager
def quiet_libraries(*, verbose: bool = False):
    """Progress bars and info logs of ``datasets``, ``transformers`` and ``huggingface_hub``
    off (``verbose=True``: only the bars), restored on exit.

    Examples
    --------
    >>> import datasets
    >>> before = datasets.is_progress_bar_enabled()
    >>> with quiet_libraries():
    ...     datasets.is_progress_bar_enabled()
    False
    >>> datasets.is_progress_bar_enabled() == before
    True
    """
    import datasets
    import huggingface_hub.utils as hub_utils
    import transformers

    tf_logging = transformers.utils.logging
    saved = (datasets.is_progress_bar_enabled(), tf_logging.is_progress_bar_enabled(),
             hub_utils.are_progress_bars_disabled(), tf_logging.get_verbosity(),
             datasets.logging.get_verbosity())
    datasets.disable_progress_bars()
    tf_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()
    if not verbose:
        tf_logging.set_verbosity_error()
        datasets.logging.set_verbosity_error()
    try:
        yield
    finally:
        if saved[0]:
            datasets.enable_progress_bars()
        if saved[1]:
            tf_logging.enable_progress_bar()
        if not saved[2]:
            hub_utils.enable_progress_bars()
        tf_logging.set_verbosity(saved[3])
        datasets.logging.set_verbosity(saved[4])
