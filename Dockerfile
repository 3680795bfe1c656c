# llamaman is the manager only (pure Python): llama-server runs in sibling containers it spawns
# through the mounted Docker socket.
#
# Offline build (no registry, no PyPI): a local Debian-based Python 3.11 image as the base and
# wheels of requirements.txt in ./wheels, e.g.
#   pip wheel -r requirements.txt -w wheels
#   docker build --build-arg BASE_IMAGE=my/debian-python:bookworm -t llamaman .
# With ./wheels empty, dependencies come from PyPI.
ARG BASE_IMAGE=python:3.11-slim

# Stage 1: the virtualenv. The wheels stay in this stage, so they add nothing to the image.
FROM ${BASE_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY requirements.txt /tmp/build/requirements.txt
COPY wheels/ /tmp/build/wheels/
RUN python3 -m venv /opt/venv \
 && if ls /tmp/build/wheels/*.whl >/dev/null 2>&1; then \
        /opt/venv/bin/pip install --no-index --find-links /tmp/build/wheels -r /tmp/build/requirements.txt; \
    else \
        /opt/venv/bin/pip install -r /tmp/build/requirements.txt; \
    fi \
 && /opt/venv/bin/pip uninstall -q -y setuptools pip

# Stage 2: the runtime image.
FROM ${BASE_IMAGE}

# uid/gid of the user the manager runs as; host directories mounted for writing
# (data, logs, models for downloads) must be writable by it.
ARG APP_UID=1000
ARG APP_GID=1000

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=deps /opt/venv /opt/venv

RUN groupadd --gid "$APP_GID" llamaman \
 && useradd --uid "$APP_UID" --gid llamaman --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin llamaman \
 && mkdir -p /data /models /tmp/llama-logs \
 && chown llamaman:llamaman /data /models /tmp/llama-logs

WORKDIR /app
COPY app.py gunicorn.conf.py ./
COPY llamaman ./llamaman
COPY templates ./templates
COPY static ./static

# The README's container defaults; bare-metal runs default to ./data, ./models, ./data/logs.
ENV DATA_DIR=/data \
    MODELS_DIR=/models \
    LOGS_DIR=/tmp/llama-logs

# Non-root. Spawning llama-server needs the Docker socket: add the socket's group at run time
# (compose: group_add: ["${DOCKER_GID}"], docker run: --group-add "$(stat -c %g /var/run/docker.sock)").
USER llamaman

# 5000 UI/REST API, 42069 Ollama/OpenAI API, 8000-8020 public instance ports (sidecar proxies).
EXPOSE 5000 42069 8000-8020
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-m", "llamaman.healthcheck"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]
