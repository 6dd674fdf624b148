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


# The files that take minutes, longest first (their durations in a 2-core run of 2026-12-07). The README's command runs
# `--dist loadfile`: pytest-xdist hands whole files to the two workers in collection order, so a long file collected
# late (test_configs_run.py sorts near the end) ran alone on one worker while the other sat idle. Starting the long
# ones first (longest-processing-time-first scheduling) lets the short files fill in around them.
LONG_FILES = (
    "models/common/test_export_parity.py",
    "models/npgmf/test_quality_guard.py",
    "test_configs_run.py",
    "benchmarking/test_speed.py",
    "models/npgmf/test_ddp.py",
    "models/npgmf/test_lightning_model.py",
    "hardening/test_kill_resume.py",
    "models/npgmf/test_heldout_guard.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Collect :data:`LONG_FILES` first, in that order; every file keeps its own tests' order (a stable sort)."""
    tests = Path(__file__).resolve().parent

    def rank(item: pytest.Item) -> int:
        try:
            path = item.path.resolve().relative_to(tests).as_posix()
        except ValueError:  # collected from outside tests/
            return len(LONG_FILES)
        return LONG_FILES.index(path) if path in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)
