"""Root fixtures: tier markers and the real components provisioned by scripts/provision.sh.

A fixture whose component is missing skips with a reason saying how to get it; with
CI=true it fails instead, so a green CI run means every tier really ran.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.helpers import remove_test_containers

TIERS = ("unit", "integration", "e2e")
HOW_TO_PROVISION = "run `sudo scripts/provision.sh` and source /var/lib/llamaman-test/test-env.sh, or use `make test`"
TESTS_DIR = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    for tier in TIERS:
        config.addinivalue_line("markers", f"{tier}: {tier}-tier test (applied by directory tests/{tier}/)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            tier = item.path.resolve().relative_to(TESTS_DIR).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


def in_ci() -> bool:
    """Return True when running under CI (CI=true), where missing components are failures."""
    return os.environ.get("CI", "").lower() == "true"


def require(component: str, how: str = HOW_TO_PROVISION) -> NoReturn:
    """Skip (or, in CI, fail) because COMPONENT is unavailable; HOW says how to get it."""
    message = f"{component} unavailable: {how}"
    if in_ci():
        pytest.fail(f"CI=true requires every tier to run; {message}", pytrace=False)
    pytest.skip(message)


def env_or_require(name: str, component: str) -> str:
    """Return environment variable NAME or require() the component it points at."""
    value = os.environ.get(name, "")
    if not value:
        require(component, f"{name} is not set; {HOW_TO_PROVISION}")
    return value


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A docker SDK client for the test engine (DOCKER_HOST); leftovers of dead sessions removed."""
    env_or_require("DOCKER_HOST", "Docker engine")
    import docker  # imported lazily: unit runs need no Docker SDK side effects

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means the engine is unusable
        require("Docker engine", f"{os.environ['DOCKER_HOST']} does not answer ({exc}); {HOW_TO_PROVISION}")
    remove_test_containers(client)
    yield client
    remove_test_containers(client, own=True)
    client.close()


@pytest.fixture(scope="session")
def llama_server_bin() -> str:
    """Path of a runnable native llama-server (LLAMA_SERVER_BIN)."""
    path = env_or_require("LLAMA_SERVER_BIN", "llama-server binary")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        require("llama-server binary", f"{path} is not an executable file; {HOW_TO_PROVISION}")
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """Directory holding the real GGUF test model (LLAMAMAN_TEST_MODELS_DIR)."""
    path = Path(env_or_require("LLAMAMAN_TEST_MODELS_DIR", "test models directory"))
    if not path.is_dir():
        require("test models directory", f"{path} does not exist; {HOW_TO_PROVISION}")
    return path


@pytest.fixture(scope="session")
def model_path(models_dir: Path) -> Path:
    """Path of the real gemma-3-270m GGUF model inside models_dir."""
    path = models_dir / env_or_require("LLAMAMAN_TEST_MODEL", "test model")
    if not path.is_file():
        require("test model", f"{path} does not exist; {HOW_TO_PROVISION}")
    return path


@pytest.fixture(scope="session")
def llama_image(docker_client: Any) -> str:
    """Name of the local llama.cpp server image (LLAMAMAN_TEST_IMAGE), present in the engine."""
    import docker.errors

    name = env_or_require("LLAMAMAN_TEST_IMAGE", "llama.cpp Docker image")
    try:
        docker_client.images.get(name)
    except docker.errors.ImageNotFound:
        require("llama.cpp Docker image", f"{name} is not in the test engine; {HOW_TO_PROVISION}")
    return name


@pytest.fixture(scope="session")
def database_url() -> str:
    """SQLAlchemy URL of the MariaDB test database, checked to be connectable."""
    url = env_or_require("LLAMAMAN_TEST_DATABASE_URL", "MariaDB test database")
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means the database is unusable
        require("MariaDB test database", f"cannot connect ({exc}); {HOW_TO_PROVISION}")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def registry() -> str:
    """host:port of the local Docker registry (LLAMAMAN_TEST_REGISTRY), checked to answer /v2/."""
    import urllib.request

    address = env_or_require("LLAMAMAN_TEST_REGISTRY", "Docker registry")
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=5):
            pass
    except OSError as exc:
        require("Docker registry", f"http://{address}/v2/ does not answer ({exc}); {HOW_TO_PROVISION}")
    return address


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Path of the headless-capable Chromium binary (LLAMAMAN_TEST_CHROMIUM)."""
    path = env_or_require("LLAMAMAN_TEST_CHROMIUM", "Chromium")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        require("Chromium", f"{path} is not an executable file; {HOW_TO_PROVISION}")
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With CI=true, a full run in which some tier passed no test at all is a failure."""
    if not in_ci() or session.config.args not in ([], ["tests"], [str(TESTS_DIR)]):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = reporter.stats.get("passed", []) if reporter else []
    ran = {report.nodeid.split("/", 2)[1] for report in passed if report.nodeid.startswith("tests/")}
    missing = [tier for tier in TIERS if tier not in ran]
    if missing:
        print(f"\nCI=true: no test passed in tier(s) {', '.join(missing)}; every tier must run")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def hub() -> Iterator[Any]:
    """A local HuggingFace Hub on 127.0.0.1 (tests/hubkit.py); stopped when the test ends."""
    from tests.hubkit import HubKit

    with HubKit() as kit:
        yield kit
