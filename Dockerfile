# llamaman itself is pure Python: llama-server runs in sibling containers it spawns.
FROM python:3.11-slim

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY app.py gunicorn.conf.py ./
COPY llamaman ./llamaman
COPY templates ./templates
COPY static ./static

# The README's container defaults; bare-metal runs default to ./data, ./models, ./data/logs.
ENV DATA_DIR=/data \
    MODELS_DIR=/models \
    LOGS_DIR=/tmp/llama-logs \
    PYTHONUNBUFFERED=1

EXPOSE 5000 42069 8000-8020
CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]
