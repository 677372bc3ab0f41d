"""`RunArguments`: the options of ``cld-hf run`` (``HfArgumentParser``-ready), validated once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["RunArguments", "check_run", "default_threads", "signals_needed", "NOISE_COLUMN", "ORIGINAL_LABEL_COLUMN"]

NOISE_COLUMN = "label_is_noisy"
ORIGINAL_LABEL_COLUMN = "original_label"


@dataclass
class RunArguments:
    """Options of ``cld-hf run`` (and of ``HfArgumentParser`` in scripts); see each field's help.

    > Data: ``dataset``, ``train_split``, ``test_split``, ``image_size``,
    ``label_noise``.

    > Method: ``query_fraction``, ``seed``, ``fractions``, ``balance``, ``proxy_epochs``, ``methods``.

    > Models and training: ``model``, ``target_epochs``, ``seeds``, ``batch_size``,
    ``learning_rate``, ``full_baseline``.

    > Output: ``output_dir``, ``overwrite_output_dir``, ``push_to_hub``, ``hub_private``,
    ``plots``.

    Examples
    --------
    >>> RunArguments(fractions=[0.2], seeds=2).fractions
    [0.2]
    >>> RunArguments(query_fraction=1.5)
    Traceback (most recent call last):
    ...
    ValueError: query_fraction == 1.5, must be in (0, 1).
    >>> RunArguments(methods=["cld", "random", "forgetting", "el2n"]).methods
    ['cld', 'random', 'forgetting', 'el2n']
    """

    # Data
    dataset: str = field(default="digits", metadata={
        "help": "built-in 'digits' (scikit-learn) or 'mnist1d', a save_to_disk directory, an "
                "imagefolder directory, or a Hub dataset id (when online)"})
    train_split: str = field(default="train", metadata={"help": "split to select from"})
    test_split: str = field(default="test", metadata={
        "help": "split for test accuracy (if missing, 20%% of the training split is held out)"})
    image_size: int = field(default=32, metadata={
        "help": "side of the square images fed to the model when the data holds PIL images"})
    label_noise: float = field(default=0.0, metadata={
        "help": "share of training labels flipped to another class (recorded in a column)"})
    # Method
    query_fraction: float = field(default=0.1, metadata={
        "help": "share of each class held out as the CLD query set"})
    seed: int = field(default=0, metadata={"help": "seed of the query split, noise and proxy"})
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.3], metadata={
        "help": "coreset fractions (one or several)"})
    balance: Literal["equal", "proportional"] = field(default="equal", metadata={
        "help": "per-class budgets: 'equal' (the paper's) or 'proportional'"})
    proxy_epochs: int = field(default=15, metadata={"help": "proxy training epochs"})
    methods: list[str] = field(default_factory=lambda: ["cld", "random"], metadata={
        "help": "coreset methods to compare, each with the same class budgets: 'cld' (top-k), "
                "'cld_noise_adaptive', 'cld_coverage' (cld_hf.strategies) and any of "
                "random forgetting el2n aum ccs_aum dyn_unc dual dual_beta herding moderate "
                "kcenter graphcut d2_pruning cal grand craig tdds (cld_hf.baselines.METHODS); the "
                "proxy run records the signals they need in its loss sweeps"})
    # Models and training
    model: str | None = field(default=None, metadata={
        "help": "local directory or Hub id of an image-classification model for proxy and "
                "target (default: a small ResNet built from a config)"})
    target_epochs: int = field(default=20, metadata={"help": "target training epochs"})
    seeds: int = field(default=3, metadata={"help": "target runs (seeds) per coreset"})
    batch_size: int = field(default=64, metadata={"help": "per-device batch size"})
    learning_rate: float = field(default=1e-2, metadata={"help": "AdamW learning rate"})
    full_baseline: bool = field(default=True, metadata={
        "help": "also train the target on the full training set"})
    # Output
    output_dir: str = field(default="cld_run", metadata={"help": "where everything is written"})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "write into an existing non-empty output directory"})
    push_to_hub: str | None = field(default=None, metadata={
        "help": "dataset repo id to push the first coreset to (the proxy goes to <id>-proxy)"})
    hub_private: bool = field(default=False, metadata={"help": "make pushed repos private"})
    plots: bool = field(default=True, metadata={"help": "write PNG plots"})
    threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads (default: one fewer than the CPU cores, at least 1, so that "
                "a second busy process does not make every step wait for a core)"})

    def __post_init__(self):
        if not 0.0 < self.query_fraction < 1.0:
            raise ValueError(f"query_fraction == {self.query_fraction}, must be in (0, 1).")
        if not 0.0 <= self.label_noise < 1.0:
            raise ValueError(f"label_noise == {self.label_noise}, must be in [0, 1).")
        if not self.fractions:
            raise ValueError("fractions is empty; give at least one, e.g. --fractions 0.1 0.3.")
        for f in self.fractions:
            if not 0.0 < f <= 1.0:
                raise ValueError(f"fractions contains {f}, each must be in (0, 1].")
        if self.balance not in ("equal", "proportional"):
            raise ValueError(f"balance == {self.balance!r}, must be 'equal' or 'proportional'.")
        if self.push_to_hub is not None and self.push_to_hub.count("/") != 1:
            raise ValueError(
                f"push_to_hub == {self.push_to_hub!r}, must be a dataset repo id "
                f"'<namespace>/<name>' (the proxy model goes to '<namespace>/<name>-proxy')."
            )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads == {self.threads}, must be >= 1.")
        for name in ("proxy_epochs", "target_epochs", "seeds", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} == {getattr(self, name)}, must be >= 1.")
        if self.proxy_epochs < 2:
            raise ValueError(
                f"proxy_epochs == {self.proxy_epochs}: CLD needs at least 3 loss snapshots "
                f"(the initial one and 2 epochs); use proxy_epochs >= 2."
            )
        from .comparison import check_methods, min_snapshots

        self.methods = check_methods(self.methods)
        need = min_snapshots(self.methods)
        if self.proxy_epochs + 1 < need:
            windowed = [m for m in self.methods if min_snapshots([m]) == need]
            raise ValueError(
                f"proxy_epochs == {self.proxy_epochs} gives {self.proxy_epochs + 1} snapshots, but "
                f"methods {windowed} use a window of {need} snapshots; use proxy_epochs >= "
                f"{need - 1} or drop them from methods."
            )


def check_run(args: RunArguments, config) -> None:
    """Cross-checks of the run's options and the recording options (``RecorderConfig``).

    Examples
    --------
    >>> from cld_hf.recording.config import RecorderConfig
    >>> check_run(RunArguments(methods=["cld", "forgetting"]), RecorderConfig(mode="train_pass"))
    Traceback (most recent call last):
    ...
    ValueError: mode == 'train_pass', but methods ['cld', 'forgetting'] read training dynamics ...
    """
    if config.mode != "sweep" and any(
            s not in ("embeddings", "probs") for s in signals_needed(args.methods)):
        raise ValueError(
            f"mode == {config.mode!r}, but methods {args.methods} read training dynamics "
            f"recorded in the eval sweeps: use --mode sweep."
        )
    snapshots = args.proxy_epochs // config.every_n_epochs + int(config.record_initial)
    if snapshots < 3:
        raise ValueError(
            f"proxy_epochs == {args.proxy_epochs} with every_n_epochs == {config.every_n_epochs} "
            f"and record_initial == {config.record_initial} records {snapshots} snapshot(s); CLD "
            f"needs at least 3 (2 loss differences): train the proxy longer."
        )


def default_threads() -> int:
    """torch CPU threads for a run: one fewer than the cores this process may use, at least 1.

    With every core busy in torch's own thread pool, one other busy process (a second job, a
    test suite) makes each step wait for a core: on two cores a training step took ~40x longer
    with two threads than with one (the README's threads benchmark).

    Examples
    --------
    >>> default_threads() >= 1
    True
    """
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


def signals_needed(methods) -> tuple[str, ...]:
    """The recorder signals of ``methods`` (:func:`cld_hf.comparison.signals_for_methods`).

    Examples
    --------
    >>> signals_needed(["cld", "random", "forgetting", "herding"])
    ('correct', 'embeddings')
    """
    from .comparison import signals_for_methods

    return signals_for_methods(methods)


