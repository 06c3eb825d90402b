"""Settings, all from the environment, with embedded defaults for `make run` and `make test`.

| variable | default | meaning |
| --- | --- | --- |
| DATABASE_URL | sqlite:///db.sqlite3 | the database (PostgreSQL in production) |
| REDIS_URL | unset | broker and cache; unset means Celery runs tasks in-process (eager) |
| BALANCE_URL | http://127.0.0.1:8002/xmlrpc | Balance XML-RPC endpoint (the bundled emulator by default) |
See README.md for the full table.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = env("DJANGO_SECRET_KEY", "dev-only-insecure-key-do-not-use-in-production")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "import_export",
    "simple_history",
    "django_prometheus",
    "disbalance.apps.DisbalanceConfig",
    "balance_gateway.apps.BalanceGatewayConfig",
    "agencies.apps.AgenciesConfig",
    "customers.apps.CustomersConfig",
    "wallets.apps.WalletsConfig",
    "payments.apps.PaymentsConfig",
    "overdrafts.apps.OverdraftsConfig",
    "reconciliation.apps.ReconciliationConfig",
    "support.apps.SupportConfig",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "disbalance.middleware.RequestIdMiddleware",
    "disbalance.middleware.ApiProblemMiddleware",
    "disbalance.middleware.PathGuardMiddleware",
    "disbalance.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "support.middleware.ConsoleLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "disbalance.urls"
WSGI_APPLICATION = "disbalance.wsgi.application"

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
            ],
        },
    },
]

DATABASE_URL = env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
# Persistent connections (seconds; 0: a new connection per request), checked before reuse: a request then costs
# no connection set-up. Budget: one connection per gunicorn thread and Celery process (docs/scaling.md).
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
                                              conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, beat) share the file in embedded mode: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 30, "transaction_mode": "IMMEDIATE"})
    # Tests use a file, never ":memory:": with an in-memory database the live server thread (notifications from
    # the emulator) would share the test thread's one connection, and two threads interleaving transactions on one
    # connection leave it inside an atomic block, so later tests' after-commit work silently never runs. A file
    # gives each thread its own connection, as PostgreSQL does. One file per test process, removed afterwards.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"disbalance-test-{os.getpid()}.sqlite3"),
    }
IS_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The support console speaks Russian by default; English is kept, chosen per user (a stored preference) or by
# the browser. Everything outside the console (the API, Balance's callbacks) answers in English whatever the
# caller's Accept-Language: error `code`s are the contract and `detail` stays English.
LANGUAGE_CODE = "ru"
LANGUAGES = [("ru", "Русский"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
CONSOLE_PATH_PREFIX = "/admin/"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Requests: consumers send small JSON documents; anything bigger is refused before it is read.
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# --- Redis, cache, Celery -------------------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

RUN_DIR = Path(env("DISBALANCE_RUN_DIR", str(BASE_DIR / ".run")))
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {}
    if REDIS_URL
    else {
        "data_folder_in": str(RUN_DIR / "broker"),
        "data_folder_out": str(RUN_DIR / "broker"),
        "processed_folder": str(RUN_DIR / "broker-processed"),
        "store_processed": False,
    }
)
# Without a broker server, tasks run in the calling process (after commit, as everywhere).
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(RUN_DIR / "celerybeat-schedule")

# --- Balance ------------------------------------------------------------------------------------------------
BALANCE_URL = env("BALANCE_URL", "http://127.0.0.1:8002/xmlrpc")
BALANCE_OPERATOR_UID = env_int("BALANCE_OPERATOR_UID", 1120000000000001)
BALANCE_CONNECT_TIMEOUT = env_float("BALANCE_CONNECT_TIMEOUT", 3.0)
BALANCE_READ_TIMEOUT = env_float("BALANCE_READ_TIMEOUT", 20.0)
# No public source shows Balance honouring SERVICE_CLIENT_ID: by default it is not sent, and a client is found
# again after an unknown outcome by the marker billing puts in its NAME (see balance_gateway/services.py).
BALANCE_TRUSTS_SERVICE_CLIENT_ID = env_bool("BALANCE_TRUSTS_SERVICE_CLIENT_ID", False)
# The marker's prefix: distinct per billing installation that shares one Balance (e.g. staging and a test stand).
BALANCE_CLIENT_MARKER_PREFIX = env("BALANCE_CLIENT_MARKER_PREFIX", "disbalance")
# HTTPS: verify Balance's certificate (true), with this CA bundle file when set (e.g. Yandex's internal root CA).
BALANCE_VERIFY_TLS = env_bool("BALANCE_VERIFY_TLS", True)
BALANCE_CA_BUNDLE = env("BALANCE_CA_BUNDLE", "")
# Quick retries of a transient failure (non-XML fault, HTTP 502/503, connection refused) inside one call, for
# calls that are safe to repeat; creations are never repeated blindly (they are looked up first).
BALANCE_TRANSIENT_RETRIES = env_int("BALANCE_TRANSIENT_RETRIES", 2)
BALANCE_RETRY_BACKOFF_SECONDS = env_float("BALANCE_RETRY_BACKOFF_SECONDS", 0.2)
# TVM2 service tickets on every call: "none" (the emulator), "tvmtool" (the local daemon's HTTP API), or a dotted
# path to a TicketProvider class.
BALANCE_TVM_PROVIDER = env("BALANCE_TVM_PROVIDER", "none")
BALANCE_TVMTOOL_URL = env("BALANCE_TVMTOOL_URL", env("DEPLOY_TVM_TOOL_URL", "http://localhost:18080"))
BALANCE_TVMTOOL_AUTH_TOKEN = env("BALANCE_TVMTOOL_AUTH_TOKEN", env("TVMTOOL_LOCAL_AUTHTOKEN", ""))
BALANCE_TVM_SELF = env("BALANCE_TVM_SELF", "")  # our alias or id in tvmtool's config (src, and dst on checks)
BALANCE_TVM_DST = env("BALANCE_TVM_DST", "balance")  # Balance's alias or id in tvmtool's config
# Incoming notifications: a TVM ticket checked by tvmtool (BALANCE_NOTIFY_TVM_CHECK) from one of these TVM ids,
# or the shared secret (the emulator and tests), or an allowed address.
BALANCE_NOTIFY_TVM_CHECK = env_bool("BALANCE_NOTIFY_TVM_CHECK", False)
BALANCE_NOTIFY_TVM_SOURCES = [int(x) for x in env_list("BALANCE_NOTIFY_TVM_SOURCES") if x.isdigit()]
# UpdateCampaigns' dt: Balance reads it as local time of this zone [unknown: Moscow in every client seen], sent
# this many seconds in the past so that a clock ahead of Balance's never makes it "in the future".
BALANCE_TIME_ZONE = env("BALANCE_TIME_ZONE", "Europe/Moscow")
BALANCE_COMPLETION_DT_LAG_SECONDS = env_int("BALANCE_COMPLETION_DT_LAG_SECONDS", 60)
# CreatePerson needs an e-mail and a phone for every person [seen], the consumer API makes them optional: a person
# gets these when the customer gave none (billing's own contact for invoices, set it for the real Balance).
BALANCE_PERSON_FALLBACK_EMAIL = env("BALANCE_PERSON_FALLBACK_EMAIL", "billing@example.com")
BALANCE_PERSON_FALLBACK_PHONE = env("BALANCE_PERSON_FALLBACK_PHONE", "+7 000 000-00-00")
# Who the service's clients are: REGION_ID decides the firm and the person types Balance allows (225: Russia).
BALANCE_REGION_ID = env_int("BALANCE_REGION_ID", 225)
# How Balance reports a unified account for this service [seen: both exist, set per service in Balance]:
# "parent" (the wallet order carries the group's money, children ConsumeSum 0) or "enqueue" (money is moved onto
# children; the wallet order carries TotalConsumeQty).
BALANCE_GROUP_REPORTING = env("BALANCE_GROUP_REPORTING", "parent")
# After a pull (GetOrdersInfo, no Tid) credited money ahead of the notifications, a NotifyOrder2 showing less than
# the pull saw is answered "not found" (Balance re-sends it) until one shows the pulled money, for at most this long.
BALANCE_PULL_GUARD_SECONDS = env_int("BALANCE_PULL_GUARD_SECONDS", 3600)
# A child joining a group: 1 keeps Balance from moving the child's free money into the group on its own.
BALANCE_GROUP_WITHOUT_TRANSFER = env_bool("BALANCE_GROUP_WITHOUT_TRANSFER", True)
# [unknown] CreateTransferMultiple between orders of one client under different agencies (every move between a
# customer's payers is one). True: ask Balance and show its refusal (NOT_EQUIVALENT_CLIENTS) to support, nothing
# changed; False: billing refuses such a move itself without calling Balance.
BALANCE_TRANSFER_ACROSS_AGENCIES = env_bool("BALANCE_TRANSFER_ACROSS_AGENCIES", True)
BALANCE_NOTIFY_SECRET = env("BALANCE_NOTIFY_SECRET", "dev-notify-secret")
BALANCE_NOTIFY_ALLOWED_IPS = env_list("BALANCE_NOTIFY_ALLOWED_IPS")
BALANCE_CALL_RETENTION_DAYS = env_int("BALANCE_CALL_RETENTION_DAYS", 30)

# Outbox: capped exponential backoff with full jitter, `failed` after OUTBOX_MAX_ATTEMPTS.
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 20)
# Quick retries inside one attempt after a fast retryable Balance error (not after a timeout).
OUTBOX_INLINE_RETRIES = env_int("OUTBOX_INLINE_RETRIES", 2)
# The first quick retry's pause (doubled for each next one, at most 0.5 s, with jitter). Tests shorten it.
OUTBOX_INLINE_RETRY_PAUSE_SECONDS = env_float("OUTBOX_INLINE_RETRY_PAUSE_SECONDS", 0.05)
OUTBOX_BACKOFF_BASE_SECONDS = env_float("OUTBOX_BACKOFF_BASE_SECONDS", 2.0)
OUTBOX_BACKOFF_CAP_SECONDS = env_float("OUTBOX_BACKOFF_CAP_SECONDS", 600.0)
OUTBOX_LEASE_SECONDS = env_int("OUTBOX_LEASE_SECONDS", 120)
OUTBOX_SWEEP_BATCH = env_int("OUTBOX_SWEEP_BATCH", 200)
# With workers, the sweep re-sends only operations overdue by this much (their own task should have run).
OUTBOX_SWEEP_GRACE_SECONDS = env_int("OUTBOX_SWEEP_GRACE_SECONDS", 30)

# A valid API token is remembered per process this long: revocation reaches other processes within it (0: off).
SERVICE_TOKEN_CACHE_SECONDS = env_int("SERVICE_TOKEN_CACHE_SECONDS", 5)

IDEMPOTENCY_KEY_TTL_DAYS = env_int("IDEMPOTENCY_KEY_TTL_DAYS", 30)
# A key whose first request never finished (crashed process) may be taken over after this many seconds.
IDEMPOTENCY_STALE_SECONDS = env_int("IDEMPOTENCY_STALE_SECONDS", 120)

# --- REST framework -----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["disbalance.auth.ServiceTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["disbalance.auth.IsConsumerService"],
    "DEFAULT_PARSER_CLASSES": ["disbalance.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "disbalance.pagination.NewestFirstCursorPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["disbalance.auth.ServiceRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"service": env("API_RATE_LIMIT", "6000/min")},
    "EXCEPTION_HANDLER": "disbalance.exceptions.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "PAGE_SIZE": 50,
    "COERCE_DECIMAL_TO_STRING": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Disbalance consumer API",
    "DESCRIPTION": (
        "The single entry point between consumer services and Balance. Consumers use only their own ids. "
        "Errors are application/problem+json with a stable `code`; see the README for a walkthrough."
    ),
    "VERSION": "1.0.0",
    # 3.1: the events are documented as OpenAPI `webhooks` (one per event type, with an example).
    "OAS_VERSION": "3.1.0",
    "WEBHOOKS": "disbalance.webhook_schema.WEBHOOKS",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "disbalance.schema.finish_schema"],
    "ENUM_NAME_OVERRIDES": {
        "RegistrationStatusEnum": "balance_gateway.models.RegistrationStatus",
        "TopUpStatusEnum": "payments.models.TopUp.Status",
        "HoldStatusEnum": "payments.models.Hold.Status",
        "TransactionTypeEnum": "wallets.models.LedgerTransaction.Type",
    },
}

# --- Logging: one JSON object per line, with the request id -------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "disbalance.logging.RequestIdFilter"}},
    "formatters": {"json": {"()": "disbalance.logging.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django.server": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}

PROMETHEUS_EXPORT_MIGRATIONS = False

# --- Money ---------------------------------------------------------------------------------------------------
# The Balance ProductID of wallet (parent) orders of the unified account.
BALANCE_WALLET_PRODUCT_ID = env_int("BALANCE_WALLET_PRODUCT_ID", 503000)
TOPUP_EXPIRY_HOURS = env_int("TOPUP_EXPIRY_HOURS", 72)
HOLD_DEFAULT_DAYS = env_int("HOLD_DEFAULT_DAYS", 7)
HOLD_MAX_DAYS = env_int("HOLD_MAX_DAYS", 90)
SPEND_REPORT_BATCH = env_int("SPEND_REPORT_BATCH", 500)
ORDERS_PULL_BATCH = env_int("ORDERS_PULL_BATCH", 200)

# --- Overdrafts and agency credit ----------------------------------------------------------------------------
# Days from the moment a customer's own balance goes below zero to the due date of that debt.
OVERDRAFT_PAYMENT_TERM_DAYS = env_int("OVERDRAFT_PAYMENT_TERM_DAYS", 15)
# A limit raised above Balance's grant (billing-admin) expires within this many days.
OVERDRAFT_RAISE_MAX_DAYS = env_int("OVERDRAFT_RAISE_MAX_DAYS", 90)
# Customers read per database round trip by the GetOverdraftParams pull.
OVERDRAFT_PULL_BATCH = env_int("OVERDRAFT_PULL_BATCH", 200)

# Auto-overdraft (SetOverdraftParams) for a direct customer's overdraft: the payment method Balance invoices the
# covered spend with ("" = Balance's default) and the currency when NotifyClient2 named none.
BALANCE_OVERDRAFT_PAYMENT_METHOD = os.environ.get("BALANCE_OVERDRAFT_PAYMENT_METHOD", "")
BALANCE_OVERDRAFT_DEFAULT_CURRENCY = os.environ.get("BALANCE_OVERDRAFT_DEFAULT_CURRENCY", "RUB")
# The PaysysID (payment system) of an agency's credit invoices (CreateInvoice): not on the protocol page, sent by
# Balance's own tests and by other services' clients. Unset (0): not sent. Set it if Balance refuses credit invoices
# without one (PAYSYS_NOT_FOUND): the paysys of the agency's firm, person type and currency.
BALANCE_CREDIT_PAYSYS_ID = env_int("BALANCE_CREDIT_PAYSYS_ID", 0)

# --- Reconciliation ----------------------------------------------------------------------------------------------
RECONCILE_BATCH_SIZE = env_int("RECONCILE_BATCH_SIZE", 500)
RECONCILE_STALE_OPERATION_MINUTES = env_int("RECONCILE_STALE_OPERATION_MINUTES", 60)
RECONCILE_REPORT_LAG_MINUTES = env_int("RECONCILE_REPORT_LAG_MINUTES", 30)
RECONCILE_AUTOFIX_MAX_ATTEMPTS = env_int("RECONCILE_AUTOFIX_MAX_ATTEMPTS", 3)
RECONCILE_PERSONS_WINDOW_MINUTES = env_int("RECONCILE_PERSONS_WINDOW_MINUTES", 180)
RECONCILE_CALL_RETRIES = env_int("RECONCILE_CALL_RETRIES", 2)
RECONCILE_LOCK_SECONDS = env_int("RECONCILE_LOCK_SECONDS", 3 * 3600)

# Events and webhooks: their own retry schedule (not the outbox's), at least 3 days; see disbalance/webhooks.py.
EVENTS_RETENTION_DAYS = env_int("EVENTS_RETENTION_DAYS", 35)
WEBHOOK_BACKOFF_BASE_SECONDS = env_float("WEBHOOK_BACKOFF_BASE_SECONDS", 30.0)
WEBHOOK_BACKOFF_CAP_SECONDS = env_float("WEBHOOK_BACKOFF_CAP_SECONDS", 6 * 3600.0)
# An endpoint failing everything is disabled (its events wait, nothing is lost) before any event's retry window
# ends; an event the endpoint keeps refusing while it takes others fails after WEBHOOK_RETRY_DAYS.
WEBHOOK_RETRY_DAYS = env_float("WEBHOOK_RETRY_DAYS", 4.0)
WEBHOOK_DISABLE_AFTER_DAYS = env_float("WEBHOOK_DISABLE_AFTER_DAYS", 3.0)
WEBHOOK_SECRET_OVERLAP_HOURS = env_float("WEBHOOK_SECRET_OVERLAP_HOURS", 24.0)
WEBHOOK_LEASE_SECONDS = env_int("WEBHOOK_LEASE_SECONDS", 300)
WEBHOOK_CONNECT_TIMEOUT = env_float("WEBHOOK_CONNECT_TIMEOUT", 3.0)
WEBHOOK_READ_TIMEOUT = env_float("WEBHOOK_READ_TIMEOUT", 10.0)
