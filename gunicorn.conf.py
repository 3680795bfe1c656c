"""gunicorn settings: both ports in one gthread worker; services start in the worker only."""
import os

from llamaman.cli import configure_logging, load_config_or_exit

_config = load_config_or_exit()

# GUNICORN_BIND (comma-separated host:port list) replaces the two addresses, as in LlamaMan
# 1.2.1; the address on LLAMAMAN_PROXY_PORT is still the one that serves as the Ollama port.
bind = [b.strip() for b in os.environ.get("GUNICORN_BIND", "").split(",") if b.strip()] or [
    f"{_config.bind_host}:{_config.ui_port}", f"{_config.bind_host}:{_config.proxy_port}"]
workers = 1  # instance state, gates and sidecar servers live in this one process
worker_class = "gthread"
threads = 64  # log streams and long generations each hold a thread
keepalive = 5
graceful_timeout = 30
preload_app = False  # the master never imports the app, so it starts no services
control_socket_disable = True  # one fixed socket path would be shared by every instance on a host
accesslog = "-"  # stdout: one logfmt line per request (format in llamaman/accesslog.py)
logger_class = "llamaman.accesslog.AccessLogger"
errorlog = "-"
loglevel = "info"


def post_worker_init(worker):
    configure_logging()
    worker.wsgi.extensions["llamaman"].start()


def worker_exit(server, worker):
    app = getattr(worker, "wsgi", None)
    if app is not None:
        app.extensions["llamaman"].stop()
