"""Shared fixtures: small, seeded, CPU-only."""

import os
from pathlib import Path

import pytest

# Keep BLAS/OpenMP from oversubscribing the 2 CI cores when tests start subprocesses.
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Root of the repository (configs/, examples/)."""
    return REPO_ROOT
