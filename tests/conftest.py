"""Shared fixtures: tiny data and models (from ``helpers``), the Hub test server, torch threads.

Helpers that tests call directly (``digits_dataset``, ``MLP``, ``toy_recorder``, ...) live in
``tests/helpers.py``; the Hub-compatible server in ``tests/hub_server.py``. Both are importable
because ``pyproject.toml`` puts ``tests/`` on pytest's ``pythonpath``.
"""

from __future__ import annotations

import pytest
import torch

# One torch thread: with the suite on 2 cores, a second busy process would otherwise make every
# training step many times slower (two threads contending for one core).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    """``(train, query)`` of scikit-learn's digits: 82 training and 30 query rows, flat pixels."""
    from helpers import digits_dataset

    return digits_dataset()


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """A Hub-compatible HTTP server on 127.0.0.1 for the real huggingface_hub clients."""
    from hub_server import HubServer

    from helpers import HUB_USER

    server = HubServer(tmp_path_factory.mktemp("hub-storage"), user=HUB_USER).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def accelerator():
    """An ``Accelerator`` on CPU (it initialises accelerate's ``PartialState``)."""
    from accelerate import Accelerator

    return Accelerator(cpu=True)


@pytest.fixture(scope="session")
def data(digits):
    """The recorder tests' ``(train, query)``: :func:`digits` (82 training, 30 query rows)."""
    return digits
