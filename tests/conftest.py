"""Shared fixtures: small, seeded, CPU-only."""

import os
from pathlib import Path

import pytest

# Keep BLAS/OpenMP from oversubscribing the 2 CI cores: one thread per pytest-xdist worker (the README's test command
# runs two), two in a plain single-process run. Set before torch is first imported; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Root of the repository (configs/, examples/)."""
    return REPO_ROOT
