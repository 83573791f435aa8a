# Adminsite: one image for every process (web, Celery worker, Celery beat, the migrate job);
# docker-compose.yml picks the command. Settings come from the environment (README).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

# The processes run as an unprivileged user that owns nothing in /app: the code is read-only
# to it. Celery beat keeps its schedule file under /tmp (see docker-compose.yml).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent app

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so code changes reuse this layer.
COPY pyproject.toml ./
RUN pip install .

# The project itself; .dockerignore keeps out tests, benchmarks, local data and the venv.
COPY . .

# Hashed, compressed assets for whitenoise. Settings need a database and Redis URL to import
# (without them they would start the embedded development servers); nothing connects to
# them here, and the key exists only for this step.
RUN DEBUG=false \
    SECRET_KEY=collectstatic-only-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz \
    DATABASE_URL=postgresql://build@127.0.0.1:1/build \
    REDIS_URL=redis://127.0.0.1:1/0 \
    python manage.py collectstatic --noinput

USER app

EXPOSE 8000

# gunicorn takes its worker count from WEB_CONCURRENCY and extra flags from GUNICORN_CMD_ARGS.
CMD ["gunicorn", "adminsite.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-", "--timeout", "60", "--graceful-timeout", "30"]
