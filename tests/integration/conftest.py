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
