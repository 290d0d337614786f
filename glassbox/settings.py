"""Django settings, read from the environment (django-environ).

Every variable is optional for development: with ``DEBUG=1`` (``make run`` and the test
suite set it) the platform runs on the embedded default (SQLite, in-memory channel layer,
eager Celery, local speech providers). ``DEBUG`` defaults to off: production is the
default, and then a missing or insecure ``SECRET_KEY`` or a missing ``ENCRYPTION_KEYS``
refuses to start.
"""

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env", overwrite=False)

DEV_SECRET_KEY = "insecure-development-key-do-not-use-in-production"
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY if DEBUG else "")
if not DEBUG and (not SECRET_KEY or SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random string of at least 32 characters when DEBUG=0. "
        "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )

PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[PUBLIC_BASE_URL])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "tenants",
    "agents",
    "calls",
    "billing",
    "campaigns",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # last, as django-axes asks: turns a locked-out login into its lockout response
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "glassbox.urls"
ASGI_APPLICATION = "glassbox.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tenants.web.dashboard_context",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'glassbox.sqlite3'}")
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=0))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default's SQLite file (and the test database) live in var/
    # (git-ignored); SQLite will not create the directory itself.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Concurrent calls write from several threads: wait for the lock instead of failing
    # ("database is locked"), take the write lock up front (no deadlocking upgrades), and
    # let readers run beside the writer (WAL). Tests get a file too: an in-memory
    # shared-cache database fails at once on contention instead of waiting.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    DATABASES["default"].setdefault("TEST", {}).setdefault(
        "NAME", str(VAR_DIR / "test-glassbox.sqlite3")
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
# Audio of fixed lines (greeting, idle prompt, goodbyes), per voice and text: calls/linecache.py
LINE_CACHE_MAX_BYTES = env.int("LINE_CACHE_MAX_BYTES", default=32 * 1024 * 1024)
LINE_CACHE_TTL_S = env.int("LINE_CACHE_TTL_S", default=7 * 24 * 3600)
LINE_CACHE_PREFIX = env.str("LINE_CACHE_PREFIX", default="glassbox:")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, and channels-redis
                # waits on a consumer's channel with a 5 s BZPOPMIN: an idle consumer (a
                # dashboard page between calls) died with "Timeout reading from Redis".
                # The socket timeout must outlast the blocking pop.
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": env.float("CHANNELS_REDIS_SOCKET_TIMEOUT", 15.0),
                    }
                ],
                "prefix": env.str("CHANNELS_PREFIX", "glassbox"),
            },
        }
    }
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CELERY_BROKER_URL = "memory://localhost/"
    CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_BEAT_SCHEDULE = {
    # Calls whose web process died mid-stream still get an end and a finalization.
    "calls-sweep-abandoned": {"task": "calls.tasks.calls_sweep_abandoned", "schedule": 300.0},
    # Transcripts and recordings past each organization's retention (calls/retention.py).
    "calls-retention-purge": {"task": "calls.tasks.calls_retention_purge", "schedule": 3600.0},
}
CELERY_ACCEPT_CONTENT = ["json"]
# The call recorder bounds every database write; what it cannot write (a stalled or
# failing database) is kept in CALL_SPOOL_DIR, on local disk, and replayed by the web
# process (calls/recorder.py). A spool file without the call's end is replayed once
# nothing has touched it for CALL_SPOOL_ORPHAN_AGE_S (its process died).
RECORDER_WRITE_TIMEOUT_S = env.float("RECORDER_WRITE_TIMEOUT_S", default=5.0)
RECORDER_WRITE_ATTEMPTS = env.int("RECORDER_WRITE_ATTEMPTS", default=3)
CALL_SPOOL_DIR = env.path("CALL_SPOOL_DIR", default=VAR_DIR / "spool")
CALL_SPOOL_ORPHAN_AGE_S = env.float("CALL_SPOOL_ORPHAN_AGE_S", default=3600.0)
CALL_SPOOL_REPLAY_INTERVAL_S = env.float("CALL_SPOOL_REPLAY_INTERVAL_S", default=30.0)
# Without celery beat (no REDIS_URL) the web process sweeps abandoned calls itself, every
# this many seconds (calls/sweeper.py, started by the ASGI lifespan); 0 turns it off.
CALLS_SWEEP_INTERVAL_S = env.float("CALLS_SWEEP_INTERVAL_S", default=0.0 if REDIS_URL else 60.0)

# Outbound event webhooks (webhooks/, docs/webhooks.md): each attempt is bounded by
# WEBHOOK_TIMEOUT_S; failed ones are retried WEBHOOK_MAX_ATTEMPTS times in all, after
# WEBHOOK_RETRY_BASE_S x3 each time (capped at WEBHOOK_RETRY_MAX_S, +-20% jitter): about a
# day. A delivery that used up its retries marks its endpoint failing; after
# WEBHOOK_DISABLE_AFTER_FAILURES such deliveries in a row, or WEBHOOK_DISABLE_AFTER_S of
# failing, the endpoint is disabled and the owners are emailed. Due retries are sent every
# WEBHOOK_DUE_INTERVAL_S (celery beat; the web process itself without REDIS_URL).
WEBHOOK_TIMEOUT_S = env.float("WEBHOOK_TIMEOUT_S", default=10.0)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=10)
WEBHOOK_RETRY_BASE_S = env.float("WEBHOOK_RETRY_BASE_S", default=60.0)
WEBHOOK_RETRY_MAX_S = env.float("WEBHOOK_RETRY_MAX_S", default=6 * 3600.0)
WEBHOOK_DISABLE_AFTER_FAILURES = env.int("WEBHOOK_DISABLE_AFTER_FAILURES", default=5)
WEBHOOK_DISABLE_AFTER_S = env.float("WEBHOOK_DISABLE_AFTER_S", default=3 * 24 * 3600.0)
WEBHOOK_DUE_INTERVAL_S = env.float("WEBHOOK_DUE_INTERVAL_S", default=30.0)
# Without a broker, deliveries run on this many threads of the web process.
WEBHOOK_LOCAL_WORKERS = env.int("WEBHOOK_LOCAL_WORKERS", default=4)
CELERY_BEAT_SCHEDULE["webhooks-deliveries-due"] = {
    "task": "webhooks.tasks.deliveries_due",
    "schedule": WEBHOOK_DUE_INTERVAL_S,
}
# Events that copy a transcript go when the retention purges the call's transcript.
CELERY_BEAT_SCHEDULE["webhooks-events-purge-retained"] = {
    "task": "webhooks.tasks.events_purge_retained",
    "schedule": 3600.0,
}

# Every authenticate() (the admin's login, the dashboard's) goes through django-axes first:
# failed logins are counted by client address and by account, and either one locks out
# for a while with 429 + Retry-After (glassbox/ratelimit.py).
AUTHENTICATION_BACKENDS = [
    "glassbox.ratelimit.LoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "glassbox.ratelimit.axes_client_address"
AXES_LOCKOUT_CALLABLE = "glassbox.ratelimit.axes_lockout_response"

# How the client address is found (throttles, login lockouts, logs): the socket's peer,
# unless this many proxies of ours stand in front and append to X-Forwarded-For (then the
# address the outermost one saw). 0 (the default) never trusts X-Forwarded-For.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# Failed attempts without credentials (invalid API keys; unsigned or forged carrier
# webhooks) allowed per client address; past it, 429 + Retry-After. Empty disables.
AUTH_FAILURE_RATE = env.str("AUTH_FAILURE_RATE", default="20/minute")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
# The image runs collectstatic at build time: hashed names, compressed, cached forever.
# Started without it (a bare `uvicorn` with DEBUG=0), WhiteNoise serves the files straight
# from the apps through the finders, so /admin/ and /api/docs/ work either way.
_MANIFEST = Path(STATIC_ROOT) / "staticfiles.json"
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG and _MANIFEST.is_file()
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG or not _MANIFEST.is_file()

# --- Call recordings (calls/recordings.py, README "What a call records") ------------------
# Written to RECORDING_SPOOL_DIR (local disk) while the call runs, then kept in the
# "recordings" storage: files under MEDIA_ROOT/recordings by default, or any S3-compatible
# store when RECORDINGS_S3_BUCKET is set (AWS_S3_ENDPOINT_URL for MinIO, R2, ...).
MEDIA_ROOT = Path(env.path("MEDIA_ROOT", default=VAR_DIR / "media"))
RECORDING_SPOOL_DIR = Path(env.path("RECORDING_SPOOL_DIR", default=VAR_DIR / "recording-spool"))
# Links to a recording (the API's and the call page's player) are valid this long.
RECORDING_URL_TTL_S = env.int("RECORDING_URL_TTL_S", default=600)
# After the call: the longest the upload to the storage may take before it is given up
# (the file then stays in RECORDING_SPOOL_DIR and the failure is logged).
RECORDING_STORE_TIMEOUT_S = env.float("RECORDING_STORE_TIMEOUT_S", default=120.0)
RECORDINGS_S3_BUCKET = env.str("RECORDINGS_S3_BUCKET", default="")
if RECORDINGS_S3_BUCKET:
    STORAGES["recordings"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": RECORDINGS_S3_BUCKET,
            "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("AWS_S3_REGION_NAME", default="") or None,
            "access_key": env.str("AWS_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("AWS_SECRET_ACCESS_KEY", default="") or None,
            "location": env.str("RECORDINGS_S3_PREFIX", default="recordings"),
            "default_acl": None,  # private: read through short-lived signed URLs only
            "querystring_auth": True,
            "querystring_expire": RECORDING_URL_TTL_S,
            "file_overwrite": False,
            "signature_version": "s3v4",
        },
    }
else:
    STORAGES["recordings"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # base_url None: never served as static media, only through a signed link
        "OPTIONS": {"location": str(MEDIA_ROOT / "recordings"), "base_url": None},
    }

CSRF_FAILURE_VIEW = "glassbox.api.errors.csrf_failure"

# --- Dashboard: login, email (tenants/web.py, docs/dashboard.md) -------------------------
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
# Password-reset and invitation links are valid this long (Django's token generator).
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=3 * 24 * 3600)
DASHBOARD_INVITATION_MAX_AGE_S = env.int("DASHBOARD_INVITATION_MAX_AGE_S", default=7 * 24 * 3600)
# Email: EMAIL_URL (e.g. smtp+tls://user:pass@smtp.example.com:587) or EMAIL_HOST and
# friends switch to SMTP; otherwise mail is printed on the console (or written to
# EMAIL_FILE_PATH with EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend).
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Glassbox <noreply@localhost>")
if env.str("EMAIL_URL", default=""):
    globals().update(env.email_url("EMAIL_URL"))
elif env.str("EMAIL_HOST", default=""):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env.str("EMAIL_HOST")
    EMAIL_PORT = env.int("EMAIL_PORT", default=587)
    EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
    EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
    EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
    EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
else:
    EMAIL_BACKEND = env.str(
        "EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend"
    )
    EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail"))
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
# --- end dashboard block ------------------------------------------------------------------

# Request size limits: bad input gets a clear 4xx, never unbounded memory.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1_048_576)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000

# Secrets at rest: a comma-separated list of Fernet keys, newest first. Rotation = put a
# new key in front and keep the old ones until re-encryption has run. Without it, a key
# is derived from SECRET_KEY (fine for the embedded default, not for production).
ENCRYPTION_KEYS = env.list("ENCRYPTION_KEYS", default=[])
if not DEBUG and not [k for k in ENCRYPTION_KEYS if k.strip()]:
    raise ImproperlyConfigured(
        "ENCRYPTION_KEYS must be set when DEBUG=0: tenant secrets would otherwise be "
        "encrypted with a key derived from SECRET_KEY, and lost when SECRET_KEY changes. "
        "Generate one with: python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())'. If secrets were already stored under the "
        "derived key, list it after the new one (python -m glassbox.encryption prints it) "
        "and run manage.py rotate_encryption_keys."
    )

# Platform default provider keys and endpoint overrides (tests point these at fakes).
DEEPGRAM_API_KEY = env.str("DEEPGRAM_API_KEY", default="")
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
CARTESIA_API_KEY = env.str("CARTESIA_API_KEY", default="")
DEEPGRAM_BASE_URL = env.str("DEEPGRAM_BASE_URL", default="wss://api.deepgram.com")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="https://api.openai.com/v1")
# Post-call analysis runs on the agent's own model when its LLM is OpenAI-compatible,
# else on this model with the platform's OPENAI_API_KEY (calls/analysis.py).
ANALYSIS_MODEL = env.str("ANALYSIS_MODEL", default="gpt-4o-mini")
CARTESIA_BASE_URL = env.str("CARTESIA_BASE_URL", default="https://api.cartesia.ai")
TWILIO_API_BASE_URL = env.str("TWILIO_API_BASE_URL", default="https://api.twilio.com")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")

# Tenant-supplied URLs (HTTP tools, OpenAI-compatible base URLs, webhooks) may reach only
# public addresses, checked when saved and again after DNS on every connection
# (glassbox/outbound.py, voice/netguard.py). A self-hoster running Ollama or vLLM on a
# private network allows exactly those networks: comma-separated CIDRs, e.g.
# "10.0.0.0/8,127.0.0.1/32". The platform's own *_BASE_URL settings are trusted as given.
OUTBOUND_ALLOWED_NETWORKS = env.list("OUTBOUND_ALLOWED_NETWORKS", default=[])
for _network in OUTBOUND_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network.strip(), strict=False)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"OUTBOUND_ALLOWED_NETWORKS: {_network!r} is not a network in CIDR form"
        ) from exc

# Calls. The media-stream token in the TwiML is single-use and short-lived: Twilio opens
# the WebSocket within a second or two of our answer.
TWILIO_STREAM_TOKEN_MAX_AGE_S = env.float("TWILIO_STREAM_TOKEN_MAX_AGE_S", default=60.0)
# Extra admission checks for inbound calls (quota, billing): dotted paths to functions
# ``check(organization, *, call_sid) -> Refusal | str | None`` (calls/admission.py).
CALL_ADMISSION_CHECKS = env.list("CALL_ADMISSION_CHECKS", default=[])

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    # The TLS-terminating proxy in front must set (and overwrite) X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HTTPS only (on in the Docker deploy): redirect http:// requests and send HSTS. Off by
# default so a first start over plain http on a private network is not locked out.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# HSTS for every subdomain and the browsers' preload list bind the operator's whole domain
# (and are hard to undo): their decision, made with the two settings above, not a default
# that `check --deploy` should nag about.
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # Third-party HTTP clients log every request (and the Twilio SDK its headers) at INFO.
    "loggers": {
        name: {"level": "WARNING"}
        for name in ("django.db.backends", "twilio", "httpx", "httpx2", "httpcore", "openai")
    },
}

# The analytics index (calls.TurnMetric) is a covering index on PostgreSQL; SQLite, the
# embedded default, gets the same index without its INCLUDE columns, as intended.
SILENCED_SYSTEM_CHECKS += ["models.W040"]

# PostgreSQL work_mem for the analytics queries (each percentile sorts one column of the
# period's turns; see docs/analytics.md). Set per transaction, not for the server.
ANALYTICS_WORK_MEM = env.str("ANALYTICS_WORK_MEM", default="32MB")

# Requests per organization, e.g. "1200/minute"; empty disables the limit.
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="1200/minute") or None

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["glassbox.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "glassbox.api.pagination.Pagination",
    "DEFAULT_FILTER_BACKENDS": ["glassbox.api.filters.StrictFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "glassbox.api.schema.TenantAutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["glassbox.api.throttling.ApiKeyRateThrottle"],
    "EXCEPTION_HANDLER": "glassbox.api.errors.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # ASCII-escaped output: an error message that echoes a lone surrogate from the input
    # must still render instead of failing to encode as UTF-8.
    "UNICODE_JSON": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Glassbox API",
    "DESCRIPTION": (
        "Configure voice agents, tools, provider credentials and phone numbers. "
        "Authenticate with an organization API key: `Authorization: Bearer gb_...`. "
        'Every error is `{"error": {"code", "message", "fields"?}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from our own static files, so /api/docs/ works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "glassbox.api.schema.add_error_responses",
        "glassbox.api.schema.patch_merges_nested_objects",
        "glassbox.api.schema.ids_are_positive",
    ],
    "ENUM_NAME_OVERRIDES": {
        "CredentialProviderEnum": "agents.models.CredentialProvider",
        "STTProviderEnum": "agents.serializers.STT_PROVIDERS",
        "LLMProviderEnum": "agents.serializers.LLM_PROVIDERS",
        "TTSProviderEnum": "agents.serializers.TTS_PROVIDERS",
        "CampaignStatusEnum": "campaigns.models.CampaignStatus",
        "ContactStatusEnum": "campaigns.models.ContactStatus",
        # several fields named "status": the call's keeps the name it always had
        "StatusEnum": "calls.models.CallStatus",
        "RecordingStatusEnum": "calls.serializers.RECORDING_STATUSES",
        "WebhookEventTypeEnum": "webhooks.models.EventType",
        "WebhookEndpointStateEnum": "webhooks.models.EndpointState",
        "WebhookDeliveryStateEnum": "webhooks.models.DeliveryState",
        # a call's carrier includes "web"; a phone number's is a telephony carrier only
        "CarrierEnum": "calls.models.Carrier",
        "PhoneCarrierEnum": "calls.models.PHONE_CARRIERS",
    },
}

# --- Billing: plans, limits, Stripe (billing/, README "Billing") --------------------------
# The plan is enforced at admission (calls.admission); extra checks go after billing's.
CALL_ADMISSION_CHECKS = ["billing.admission.plan_admission", *CALL_ADMISSION_CHECKS]
# A live call's media process vouches for it this often (calls.signals.call_alive); its
# concurrency slot lapses BILLING_CALL_LEASE_S after the last time (a dead process).
CALL_HEARTBEAT_S = env.float("CALL_HEARTBEAT_S", default=15.0)
# A running call's live state (calls/control.py): mirrored at most this often, and kept
# this long after its last write (in Redis with REDIS_URL, else in the process's memory).
CALL_LIVE_INTERVAL_S = env.float("CALL_LIVE_INTERVAL_S", default=0.25)
CALL_LIVE_TTL_S = env.float("CALL_LIVE_TTL_S", default=30.0)
# Embeddable widget (calls/widget.py): web calls started per public key and per client
# address, "count/period" as for AUTH_FAILURE_RATE.
WIDGET_RATE_PER_KEY = env.str("WIDGET_RATE_PER_KEY", default="30/minute")
WIDGET_RATE_PER_ADDRESS = env.str("WIDGET_RATE_PER_ADDRESS", default="5/minute")
BILLING_CALL_LEASE_S = env.float("BILLING_CALL_LEASE_S", default=60.0)
if BILLING_CALL_LEASE_S < 2 * CALL_HEARTBEAT_S:
    raise ImproperlyConfigured("BILLING_CALL_LEASE_S must be at least 2 x CALL_HEARTBEAT_S.")
BILLING_REDIS_PREFIX = env.str("BILLING_REDIS_PREFIX", default="glassbox:billing:")
# After a failed payment calls go on this long, then are refused until an invoice is paid.
BILLING_PAYMENT_GRACE_S = env.int("BILLING_PAYMENT_GRACE_S", default=3 * 24 * 3600)
# Stripe: no secret key = self-hosted mode (no Stripe calls at all).
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_WEBHOOK_TOLERANCE_S = env.int("STRIPE_WEBHOOK_TOLERANCE_S", default=300)
STRIPE_METER_EVENT_NAME = env.str("STRIPE_METER_EVENT_NAME", default="glassbox_call_minutes")
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
CELERY_BEAT_SCHEDULE.update(
    {
        "billing-usage-reconcile": {"task": "billing.tasks.usage_reconcile", "schedule": 600.0},
        "billing-suspend-overdue": {
            "task": "billing.tasks.subscriptions_suspend_overdue",
            "schedule": 900.0,
        },
    }
)
# --- end billing block --------------------------------------------------------------------

# --- Outbound calls and campaigns (calls/outbound.py, campaigns/) -------------------------
# Number prefixes no organization may call, whatever its dialing policy (premium-rate and
# shared-cost numbers are refused by default too, from libphonenumber's metadata).
OUTBOUND_REFUSED_PREFIXES = env.list("OUTBOUND_REFUSED_PREFIXES", default=["+1900", "+1976"])
# An inbound number's lookup webhook (calls/lookup.py) has this long, all in: the caller
# is waiting for the call to be answered.
NUMBER_LOOKUP_TIMEOUT_S = env.float("NUMBER_LOOKUP_TIMEOUT_S", default=2.0)
# Campaigns are driven by call ends; this tick catches retries whose delay has passed and
# calling windows that opened (and campaigns whose worker restarted).
CAMPAIGN_TICK_S = env.float("CAMPAIGN_TICK_S", default=30.0)
# A contact still "dialing" this long after it was claimed lost its worker mid-dial: it is
# failed (never dialed again: Twilio may have placed the call).
CAMPAIGN_DIAL_STALE_S = env.float("CAMPAIGN_DIAL_STALE_S", default=120.0)
# Without celery beat (no REDIS_URL) the web process ticks campaigns itself (0: off).
CAMPAIGNS_TICK_INTERVAL_S = env.float(
    "CAMPAIGNS_TICK_INTERVAL_S", default=0.0 if REDIS_URL else CAMPAIGN_TICK_S
)
CELERY_BEAT_SCHEDULE["campaigns-tick"] = {
    "task": "campaigns.tasks.campaigns_tick",
    "schedule": CAMPAIGN_TICK_S,
}
