"""Settings, all read from the environment (see the README's settings table).

With ``DATABASE_URL`` / ``REDIS_URL`` unset, the project-local PostgreSQL and Redis under
``.devdata/`` are started (or reused) by :mod:`adminsite.devservices`.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import dj_database_url
from csp.constants import NONCE

from adminsite import env

BASE_DIR = Path(__file__).resolve().parent.parent
# pytest-django imports settings before any conftest runs, so a test run is recognised here.
TESTING = env.get_bool("ADMINSITE_TESTING", default="pytest" in sys.modules)

DEBUG = env.get_bool("DEBUG", default=True)
SECRET_KEY = env.get_str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise env.ImproperlyConfiguredError("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-insecure-" + "x" * 50  # noqa: S105 - development default only

ALLOWED_HOSTS = env.get_list(
    "ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.get_list("CSRF_TRUSTED_ORIGINS", default=[])
# How many reverse proxies in front of us append to X-Forwarded-For; 0 trusts none of it.
TRUSTED_PROXY_COUNT = env.get_int("TRUSTED_PROXY_COUNT", default=0)

HOST = env.get_str("HOST", default="127.0.0.1")
PORT = env.get_int("PORT", default=8000)

# --- database and redis -------------------------------------------------------------------
DATABASE_URL = env.get_str("DATABASE_URL", default="")
REDIS_URL = env.get_str("REDIS_URL", default="")
if not DATABASE_URL or not REDIS_URL:
    from adminsite import devservices

    DATABASE_URL = DATABASE_URL or devservices.ensure_postgres()
    REDIS_URL = REDIS_URL or devservices.ensure_redis()

DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env.get_int("CONN_MAX_AGE", default=60)
    )
}
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["TEST"] = {"NAME": env.get_str("TEST_DATABASE_NAME", default="test_adminsite")}

# Every key this project puts in Redis (Celery queues, cache) starts with this prefix, so several
# deployments can share one Redis. Each test process (pytest-xdist worker included) gets its own,
# so parallel test runs never consume each other's tasks.
_TEST_RUN = "_".join(
    filter(None, [DATABASES["default"]["TEST"]["NAME"], os.environ.get("PYTEST_XDIST_WORKER")])
)
REDIS_KEY_PREFIX = env.get_str("REDIS_KEY_PREFIX", default=f"{_TEST_RUN}:" if TESTING else "")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"{REDIS_KEY_PREFIX}adminsite",
    }
}

# --- applications -------------------------------------------------------------------------
INSTALLED_APPS = [
    "adminsite.admin_config.ConsoleAdminConfig",  # django.contrib.admin with our AdminSite
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "csp",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "auditlog",
    "hijack",
    "adminsite",
    "audit",
    "impersonation",
    "tickets",
    "monitoring",
    "shop",
]

MIDDLEWARE = [
    "adminsite.middleware.RequestIdMiddleware",
    # Request latency per route, error rate and 5xx count: outermost but for the request id,
    # so the latency covers every other middleware. A few microseconds a request.
    "monitoring.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "adminsite.middleware.ApiBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Django's MessageMiddleware, making the message storage only for requests that use it.
    "adminsite.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # django-csp's CSPMiddleware, building the policy from settings once, not per response.
    "adminsite.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "hijack.middleware.HijackUserMiddleware",
    # Who acts, from where, for every audit entry the request writes (after auth and hijack).
    "audit.middleware.AuditContextMiddleware",
    # Polices a running impersonation on every request: time limit, the staff member's rights,
    # blocked actions, pages visited, the banner (after audit, so refusals are recorded).
    "impersonation.middleware.ImpersonationMiddleware",
    "adminsite.middleware.ApiErrorMiddleware",
]

ROOT_URLCONF = "adminsite.urls"
WSGI_APPLICATION = "adminsite.wsgi.application"

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
                "csp.context_processors.nonce",
                "adminsite.context_processors.console",
            ],
        },
    }
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # plotly.js from the installed plotly package, at /static/plotly/plotly.min.js (no CDN).
    "adminsite.staticfinders.PlotlyFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG
# In development files are found as they change, and staticfiles/ need not exist (no collectstatic).
WHITENOISE_AUTOREFRESH = DEBUG

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- security -----------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.get_bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.get_int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXY_COUNT else None
    # /healthz and /readyz are probed over plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz/?$", r"^readyz/?$"]

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE, "'unsafe-eval'"],  # plotly.js needs eval for some traces
        # plotly.js and htmx indicators set inline styles
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'", "https://checkout.stripe.com"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}

# Request bodies: Django's own limit for form fields; API bodies are capped in middleware (413).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.get_int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=10 * 1024 * 1024)
API_MAX_BODY_BYTES = env.get_int("API_MAX_BODY_BYTES", default=5 * 1024 * 1024)

# --- email --------------------------------------------------------------------------------
EMAIL_URL = env.get_str("EMAIL_URL", default="")
if EMAIL_URL:
    vars().update(env.parse_email_url(EMAIL_URL))
else:
    EMAIL_BACKEND = env.get_str(
        "EMAIL_BACKEND",
        default="django.core.mail.backends.console.EmailBackend"
        if DEBUG
        else "django.core.mail.backends.smtp.EmailBackend",
    )
    EMAIL_HOST = env.get_str("EMAIL_HOST", default="localhost")
    EMAIL_PORT = env.get_int("EMAIL_PORT", default=25)
    EMAIL_HOST_USER = env.get_str("EMAIL_HOST_USER", default="")
    EMAIL_HOST_PASSWORD = env.get_str("EMAIL_HOST_PASSWORD", default="")
    EMAIL_USE_TLS = env.get_bool("EMAIL_USE_TLS", default=False)
    EMAIL_USE_SSL = env.get_bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.get_int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.get_str(
    "DEFAULT_FROM_EMAIL", default="Adminsite <support@adminsite.local>"
)
SERVER_EMAIL = DEFAULT_FROM_EMAIL
SITE_URL = env.get_str("SITE_URL", default=f"http://{HOST}:{PORT}")

# --- stripe -------------------------------------------------------------------------------
STRIPE_SECRET_KEY = env.get_str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.get_str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.get_str("STRIPE_API_BASE", default="")
# Seconds to wait for one Stripe API call (the SDK retries a timed-out call twice, with the same
# idempotency key) before the customer is told to try again.
STRIPE_TIMEOUT_SECONDS = env.get_int("STRIPE_TIMEOUT_SECONDS", default=20)

# --- audit --------------------------------------------------------------------------------
AUDIT_RETENTION_DAYS = env.get_int("AUDIT_RETENTION_DAYS", default=2557)  # 7 years
AUDIT_LEGAL_HOLD = env.get_bool("AUDIT_LEGAL_HOLD", default=False)
AUDIT_CHECKPOINT_KEY = env.get_str("AUDIT_CHECKPOINT_KEY", default="") or SECRET_KEY
# Where the retention purge writes its archives (a persistent volume in production).
AUDIT_ARCHIVE_DIR = env.get_str(
    "AUDIT_ARCHIVE_DIR", default=str(BASE_DIR / ".devdata" / "audit-archive")
)
# audit_verify reports committed entries still unlinked after this long (sealing stopped).
AUDIT_MAX_UNSEALED_SECONDS = env.get_int("AUDIT_MAX_UNSEALED_SECONDS", default=300)
# How long the sealer process pauses between rounds: the usual delay before a new entry is
# linked into the chain. An idle round is one index probe.
AUDIT_SEAL_INTERVAL = env.get_float("AUDIT_SEAL_INTERVAL", default=0.25)
if AUDIT_RETENTION_DAYS < 1:
    raise env.ImproperlyConfiguredError(
        f"AUDIT_RETENTION_DAYS must be at least 1, got {AUDIT_RETENTION_DAYS}"
    )
# django-auditlog writes its model diffs into our table, with our request ids.
AUDITLOG_LOGENTRY_MODEL = "audit.AuditEntry"
AUDITLOG_CID_GETTER = "audit.context.get_request_id"

# --- celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
# With late acks on Redis, a task whose worker died (kill -9, lost machine) goes back on the
# queue once it has been unacknowledged this long; a worker restores such tasks at start and
# every few seconds after. Periodic tasks hold an overlap lock for their whole time limit, so a
# task still running past this timeout and delivered again is skipped, not run twice.
CELERY_VISIBILITY_TIMEOUT = env.get_int("CELERY_VISIBILITY_TIMEOUT", default=3600)
if CELERY_VISIBILITY_TIMEOUT < 1:
    raise env.ImproperlyConfiguredError(
        f"CELERY_VISIBILITY_TIMEOUT must be at least 1 second, got {CELERY_VISIBILITY_TIMEOUT}"
    )
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT
}
if REDIS_KEY_PREFIX:
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = REDIS_KEY_PREFIX
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"global_keyprefix": REDIS_KEY_PREFIX}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A worker heartbeat older than this makes /readyz report the workers as down.
WORKER_HEARTBEAT_MAX_AGE = env.get_int("WORKER_HEARTBEAT_MAX_AGE", default=90)
# Background job run records (/admin/jobs/) are deleted after this many days, daily.
JOB_RUN_RETENTION_DAYS = env.get_int("JOB_RUN_RETENTION_DAYS", default=30)
if JOB_RUN_RETENTION_DAYS < 1:
    raise env.ImproperlyConfiguredError(
        f"JOB_RUN_RETENTION_DAYS must be at least 1, got {JOB_RUN_RETENTION_DAYS}"
    )

# --- REST framework -----------------------------------------------------------------------
# Throttle rates, "<count>/<second|minute|hour|day>" (DRF reads the first letter of the unit):
# per signed-in user, and per client address for anonymous callers.
API_THROTTLE_RATES = {
    "user": env.get_str("API_THROTTLE_USER_RATE", default="6000/min"),
    "anon": env.get_str("API_THROTTLE_ANON_RATE", default="120/min"),
}
for _scope, _rate in API_THROTTLE_RATES.items():
    if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", _rate):
        raise env.ImproperlyConfiguredError(
            f"API_THROTTLE_{_scope.upper()}_RATE must look like '100/min' (count/second|minute|hour|day), got {_rate!r}"
        )
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "adminsite.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["adminsite.permissions.IsStaff"],
    "DEFAULT_RENDERER_CLASSES": ["djangorestframework_camel_case.render.CamelCaseJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["djangorestframework_camel_case.parser.CamelCaseJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "adminsite.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "adminsite.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": API_THROTTLE_RATES,
    "DEFAULT_THROTTLE_CLASSES": [
        "adminsite.api.UserRateThrottle",
        "adminsite.api.AnonRateThrottle",
    ],
    # The anonymous throttle keys on the client address: trust X-Forwarded-For only as far as
    # our own proxies append to it, or a client could forge a fresh address per request.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Adminsite API",
    "DESCRIPTION": "Staff console API: support tickets, monitoring, alerts.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "CAMELIZE_NAMES": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.contrib.djangorestframework_camel_case.camelize_serializer_fields",
        "drf_spectacular.hooks.postprocess_schema_enums",
        "adminsite.api.strip_trailing_slashes",
    ],
}

# --- hijack (impersonation mechanics) -----------------------------------------------------
# hijack's own views are not routed (impersonation/views.py is the one way in); should anything
# still ask hijack whether a switch is allowed, it gets our policy's answer.
HIJACK_PERMISSION_CHECK = "impersonation.policy.hijack_permission_check"
HIJACK_INSERT_BEFORE = None  # our own banner is rendered by the layout

# --- impersonation ------------------------------------------------------------------------
# Server-side limit of one impersonation; the session ends by itself after it.
IMPERSONATION_MAX_MINUTES = env.get_int("IMPERSONATION_MAX_MINUTES", default=30)
if not 1 <= IMPERSONATION_MAX_MINUTES <= 480:
    raise env.ImproperlyConfiguredError(
        f"IMPERSONATION_MAX_MINUTES must be between 1 and 480 minutes, got {IMPERSONATION_MAX_MINUTES}"
    )
# Email the customer that support accessed their account (sent by a Celery task).
IMPERSONATION_NOTIFY_CUSTOMER = env.get_bool("IMPERSONATION_NOTIFY_CUSTOMER", default=False)

# --- monitoring ---------------------------------------------------------------------------
# Raw metric points are kept this many days (one partition a day); the rollups a year.
METRICS_RAW_RETENTION_DAYS = env.get_int("METRICS_RAW_RETENTION_DAYS", default=14)
METRICS_ROLLUP_RETENTION_DAYS = env.get_int("METRICS_ROLLUP_RETENTION_DAYS", default=366)
if METRICS_RAW_RETENTION_DAYS < 2:
    raise env.ImproperlyConfiguredError(
        f"METRICS_RAW_RETENTION_DAYS must be at least 2, got {METRICS_RAW_RETENTION_DAYS}"
    )
# Alert notifications: generic webhooks are signed with HMAC-SHA256 of this secret (receivers
# verify X-Adminsite-Signature); defaults to SECRET_KEY so signing always works in development.
ALERT_WEBHOOK_SECRET = env.get_str("ALERT_WEBHOOK_SECRET", default="") or SECRET_KEY
# Each delivery: this timeout per try, and up to this many retries with exponential backoff
# (ALERT_RETRY_BASE_SECONDS, doubling, at most an hour apart).
ALERT_NOTIFICATION_TIMEOUT = env.get_int("ALERT_NOTIFICATION_TIMEOUT", default=10)
ALERT_NOTIFICATION_RETRIES = env.get_int("ALERT_NOTIFICATION_RETRIES", default=6)
ALERT_RETRY_BASE_SECONDS = env.get_int("ALERT_RETRY_BASE_SECONDS", default=10)

# --- logging ------------------------------------------------------------------------------
LOG_LEVEL = env.get_str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "adminsite.logging.RequestIdFilter"}},
    "formatters": {"json": {"()": "adminsite.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.server": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
    },
}

if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
