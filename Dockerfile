# Production image: one image, three roles (web, worker, beat) chosen by the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=glassbox.settings

WORKDIR /app
RUN useradd --create-home --uid 10001 glassbox

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic needs settings to load; the build-time keys are never used at run time.
RUN DEBUG=0 SECRET_KEY=build-only-key-not-used-at-runtime-0123456789 \
    ENCRYPTION_KEYS=YnVpbGQtb25seS1rZXktbm90LXVzZWQtYXQtcnVudGk= \
    python manage.py collectstatic --noinput \
 && mkdir -p /app/var && chown -R glassbox /app/var

USER glassbox
EXPOSE 8000
ENV DEBUG=0
# Uvicorn, not Daphne: equal when lightly loaded, better tails under load (docs/benchmarks.md).
CMD ["uvicorn", "glassbox.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--lifespan", "off", "--ws", "websockets-sansio", "--no-access-log", \
     "--proxy-headers", "--forwarded-allow-ips", "*"]
