import pytest

from tests.appkit import make_app


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    yield app
    app.extensions["llamaman"].stop()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def download_api(tmp_path, hub):
    """(client, csrf headers, services) of a started app whose HF_ENDPOINT is the local Hub."""
    from tests.appkit import setup_admin

    app = make_app(tmp_path / "app", MODELS_DIR=str(tmp_path / "models"), HF_ENDPOINT=hub.url)
    svc = app.extensions["llamaman"]
    svc.downloads.runner.retry_base_s = 0.01  # keep the exponential backoff short in tests
    client = app.test_client()
    headers = {"X-CSRF-Token": setup_admin(client)}
    yield client, headers, svc
    svc.stop()
