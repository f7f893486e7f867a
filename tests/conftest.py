"""Shared fixtures: external services (PostgreSQL, Chromium) skip locally and fail on CI; the
test tiers.

Tiers: a plain ``pytest`` runs the default tier (every contract: greedy, refinement, sampler
contract, lifecycle with one real kill-and-resume, CLI refusals, figures; under 8 minutes on 2
cores). Tests marked ``full`` (the soak, the journal and PostgreSQL variants, the browser, the
Cortex-M target, the long end-to-end runs) run with ``pytest --full`` and always under CI
(``CI=true``, as ``.ci/run`` is run); elsewhere they are skipped with that reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_ENV = "TINYTNAS_TEST_POSTGRES_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true",
                     help="run the full tier too (tests marked full; always so under CI=true)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--full") or os.environ.get("CI") == "true":
        return
    skip = pytest.mark.skip(reason="full tier: run with `pytest --full` (CI and .ci/run do)")
    for item in items:
        if "full" in item.keywords:
            item.add_marker(skip)


def require_service(name: str, reason: str) -> None:
    """Skip the test when a service is missing, or fail it on CI (``CI=true``): CI must run it.

    Args:
        name: The service, e.g. ``"PostgreSQL"`` or ``"Chromium"``.
        reason: How to provide it, e.g. ``"set TINYTNAS_TEST_POSTGRES_URL (.ci/run starts one)"``.
    """
    message = f"{name} not available: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a new, empty PostgreSQL database, dropped after the test.

    The server comes from ``$TINYTNAS_TEST_POSTGRES_URL`` (its role needs CREATEDB, as
    ``.ci/run``'s has). Without CREATEDB the test gets the given database itself; tests then stay
    apart through unique study names (``unique_study_name``).
    """
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        require_service("PostgreSQL", f"set {POSTGRES_ENV} (.ci/run starts one)")
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = f"tinytnas_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.ProgrammingError:  # no CREATEDB privilege: share the given database
        admin.dispose()
        yield base
        return
    except sa.exc.OperationalError as exc:
        admin.dispose()
        require_service("PostgreSQL", f"cannot connect to {POSTGRES_ENV}: {exc.orig}")
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            # FORCE: worker processes a test killed may still hold connections.
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def unique_study_name(request: pytest.FixtureRequest) -> str:
    """A study name no other test (or earlier run) uses."""
    return f"{request.node.name[:60]}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def gunpoint_search() -> tuple:
    """Three trained candidates on gunpoint (300 steps: they learn), in one process, in memory.

    Returns:
        The dataset, the objective and the study; tests read them and do not change them.
    """
    import optuna

    import tinytnas_optuna as tt
    from tinytnas_optuna.datasets import load_dataset

    ds = load_dataset("gunpoint")
    objective = tt.TinyTNASObjective(
        (ds.x_train, ds.y_train), budget=tt.HardwareBudget(ram="20KB", flash="64KB", macs="60K"),
        seed=0, steps=300)
    study = optuna.create_study(direction="maximize", sampler=tt.TinyTNASSampler(seed=0),
                                pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=3)
    return ds, objective, study
