"""Settings for gemini-server: every knob is an environment variable with a development default."""

import re
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def parse_duration(value: str) -> timedelta:
    """Reads `30m`, `12h`, `7d`, `45s` or a bare number of seconds, as JWT_EXPIRES_IN is written."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", str(value))
    if not match:
        raise ImproperlyConfigured(
            f"Cannot read the duration {value!r}; write it like 30m, 12h or 7d."
        )
    amount, unit = int(match.group(1)), match.group(2) or "s"
    seconds = amount * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    return timedelta(seconds=seconds)


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated variable; `a, b` means ["a", "b"], as people write it."""
    return [item.strip() for item in env.list(name, default=default) if item.strip()]


def env_positive_int(name: str, default: int) -> int:
    """A whole number of at least 1: for limits, where 0 would stop everything."""
    value = env.int(name, default=default)
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be a whole number of at least 1, not {value}.")
    return value


DEBUG = env.bool("DJANGO_DEBUG", default=True)

# Development-only secrets: production (DJANGO_DEBUG=false) refuses to start with them.
_DEV_SECRET_KEY = "dev-only-secret-key-change-me-0123456789-abcdefghijklmnopqrstuvwxyz"
_DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789-abcdefghijklmnopqrstuvwxyz"
SECRET_KEY = env("SECRET_KEY", default=_DEV_SECRET_KEY)
JWT_SECRET = env("JWT_SECRET", default=_DEV_JWT_SECRET)
# Values that only stand in for a secret: .env.example's and the README's.
_PLACEHOLDER_SECRETS = {
    _DEV_SECRET_KEY,
    _DEV_JWT_SECRET,
    "change-me-to-a-long-random-string-of-at-least-fifty-characters",
    "change-me-to-another-long-random-string-of-fifty-characters",
    "your-secret",
}


def secret_is_placeholder(value: str) -> bool:
    """An empty value, a documented placeholder, or anything still saying change-me / dev-only."""
    lowered = value.strip().lower()
    return (
        not lowered
        or value in _PLACEHOLDER_SECRETS
        or any(marker in lowered for marker in ("change-me", "changeme", "dev-only"))
    )


if not DEBUG:
    for _name, _value in (("SECRET_KEY", SECRET_KEY), ("JWT_SECRET", JWT_SECRET)):
        if secret_is_placeholder(_value):
            raise ImproperlyConfigured(
                f"{_name} must be set to a secret of your own when DJANGO_DEBUG is false "
                "(not empty, not a development value, not .env.example's placeholder)."
            )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default=["*"] if DEBUG else ["localhost", "127.0.0.1"])
PORT = env.int("PORT", default=3000)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "corsheaders",
    "channels",
    "django_ratelimit",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "sessions_app",
    "chat",
    "monitoring",
    # The fake Gemini upstream (`manage.py fake_gemini`), for tests, demos and the benchmark.
    "devtools",
]

MIDDLEWARE = [
    # First: every response, errors included, carries the request id and is counted.
    "gemini_server.request_id.RequestIdMiddleware",
    "gemini_server.middleware_metrics.HttpMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # The admin console's cookie session, user and messages; the API (bearer tokens) skips them.
    "gemini_server.middleware_console.ConsoleSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "gemini_server.middleware_console.ConsoleAuthenticationMiddleware",
    "gemini_server.middleware_console.ConsoleMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gemini_server.urls"
ASGI_APPLICATION = "gemini_server.asgi.application"

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

# An empty DATABASE_URL (as a copied .env.example has) means the embedded SQLite database.
# The embedded database's directory: the Docker image puts it on a volume its user can write.
DATA_DIR = Path(env("DATA_DIR", default=str(BASE_DIR))).resolve()
DATABASE_URL = env("DATABASE_URL", default="") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
DATABASES = {"default": environ.Env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Turns run in threads next to request handlers; wait for the write lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # Tests on a file, not the shared-cache memory database: there a reader in another thread
    # meets "table is locked" at once instead of waiting its turn, as SQLite's file locking does.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / ".test-db.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A bounded pool of persistent connections per process: a turn or a request borrows one
    # for each piece of database work and gives it back, so connections are neither opened per
    # request nor multiplied by threads; past DB_POOL_MAX a borrower waits DB_POOL_TIMEOUT.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DB_POOL_MIN", default=2),
        "max_size": env.int("DB_POOL_MAX", default=16),
        "timeout": env.float("DB_POOL_TIMEOUT", default=10),
        # Past DB_POOL_MIN, a connection unused this long is closed: after a burst the pool
        # shrinks back.
        "max_idle": env.float("DB_POOL_MAX_IDLE", default=60),
    }
# Threads for the synchronous work of a serving process (a request's view, database calls of
# turns and sockets): one per pooled database connection (gemini_server.db).
SYNC_THREADS = env.int("SYNC_THREADS", default=env.int("DB_POOL_MAX", default=16))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
# Prefixes the keys of the shared cache, and of what is kept in Redis directly (rate limits,
# credentials epochs), so that several deployments can share one Redis.
CACHE_KEY_PREFIX = env("CACHE_KEY_PREFIX", default="gemini-server")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "gemini_server.cache.ProcessRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": env("CHANNEL_LAYER_PREFIX", default="gemini-server"),
                "capacity": 1000,
                "expiry": 60,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# django-ratelimit warns about Django's own Redis backend (not on its list, but atomic) and
# errors on the local-memory cache, which is right for the embedded single-process mode.
SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]
if not REDIS_URL:
    SILENCED_SYSTEM_CHECKS.append("django_ratelimit.E003")
RATELIMIT_USE_CACHE = "default"
RATELIMIT_VIEW = "gemini_server.errors.rate_limited_view"

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
# The web client's scripts and styles (served like the admin's: SERVE_STATIC, or collectstatic).
STATICFILES_DIRS = [BASE_DIR / "static"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "accounts.authentication.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.throttling.UserRateLimit"],
    "DEFAULT_PARSER_CLASSES": ["gemini_server.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "gemini_server.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "gemini_server.schema.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "gemini-server API",
    "DESCRIPTION": "A multi-user Gemini coding agent behind REST, Server-Sent Events and WebSockets.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's assets are served by this server, not a CDN: the docs work offline too.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # A user's role and a chat message's role are both fields named `role`; name the user's.
    "ENUM_NAME_OVERRIDES": {
        "UserRoleEnum": "accounts.models.Role",
        "ErrorCodeEnum": "gemini_server.schema.ERROR_CODES",
    },
}

JWT_EXPIRES_IN = parse_duration(env("JWT_EXPIRES_IN", default="7d"))
JWT_REFRESH_EXPIRES_IN = parse_duration(env("JWT_REFRESH_EXPIRES_IN", default="30d"))
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": JWT_EXPIRES_IN,
    "REFRESH_TOKEN_LIFETIME": JWT_REFRESH_EXPIRES_IN,
    "SIGNING_KEY": JWT_SECRET,
    "ALGORITHM": "HS256",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "UPDATE_LAST_LOGIN": False,
}

CORS_ALLOWED_ORIGINS = env_list("CORS_ORIGIN", default=["http://localhost:3001"])
if "*" in CORS_ALLOWED_ORIGINS:
    CORS_ALLOW_ALL_ORIGINS = True
    CORS_ALLOWED_ORIGINS = []
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "last-event-id",
    "x-api-key",
    "x-requested-with",
    "x-request-id",
)
CORS_EXPOSE_HEADERS = ("retry-after", "x-request-id")

# HTTPS: TLS=true when clients reach the server over HTTPS, directly or through a TLS proxy of
# yours that sets X-Forwarded-Proto (and strips a client's own). It turns on the HTTPS redirect,
# HSTS and Secure cookies; without it (the default, also in production) plain HTTP works, admin
# login included, as `docker run -p 3000:3000` serves it. `manage.py check --deploy` is clean
# with DJANGO_DEBUG=false and TLS=true.
TLS = env.bool("TLS", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TLS else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=TLS)
SECURE_REDIRECT_EXEMPT = [r"^health", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if TLS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = TLS
SECURE_HSTS_PRELOAD = TLS
SESSION_COOKIE_SECURE = TLS
CSRF_COOKIE_SECURE = TLS
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", default=[])

# LOG_FORMAT=json: one JSON object per line (timestamp, level, logger, message, requestId,
# exception); text otherwise. Every line carries the id of the request or socket it was written for.
LOG_FORMAT = env("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Upstream errors and traces may quote a secret of the server's; the log never shows it.
    "filters": {
        "secrets": {"()": "gemini_server.scrub.SecretsLogFilter"},
        "request_id": {"()": "gemini_server.logs.RequestIdLogFilter"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "gemini_server.logs.JsonLogFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id", "secrets"],
            "formatter": LOG_FORMAT,
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's own console handler (debug only) would print its records a second time, as text.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.request": {"level": "ERROR"},
    },
}

# Prometheus: `GET /metrics` answers admins, and scrapers sending `Authorization: Bearer <this>`.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
if METRICS_TOKEN and (len(METRICS_TOKEN) < 16 or secret_is_placeholder(METRICS_TOKEN)):
    raise ImproperlyConfigured(
        "METRICS_TOKEN must be at least 16 characters of your own, or empty to allow admins only."
    )

# The agent and its upstream.
GEMINI_API_KEY = env("GEMINI_API_KEY", default="")
GEMINI_MODEL = env("GEMINI_MODEL", default="gemini-2.5-flash")
GEMINI_BASE_URL = env("GEMINI_BASE_URL", default="")
GEMINI_API_VERSION = env("GEMINI_API_VERSION", default="v1beta")
GEMINI_TIMEOUT_SECONDS = env.float("GEMINI_TIMEOUT_SECONDS", default=600)
GEMINI_STREAM_IDLE_SECONDS = env.float("GEMINI_STREAM_IDLE_SECONDS", default=90)
GEMINI_RETRY_ATTEMPTS = env.int("GEMINI_RETRY_ATTEMPTS", default=3)
# 429s are retried after Google's retryDelay (or a back-off) while the waits fit in this budget.
GEMINI_RATE_LIMIT_ATTEMPTS = env.int("GEMINI_RATE_LIMIT_ATTEMPTS", default=10)
GEMINI_RATE_LIMIT_MAX_WAIT_SECONDS = env.float("GEMINI_RATE_LIMIT_MAX_WAIT_SECONDS", default=60)
# Model calls allowed for one user message (gemini-cli's MAX_TURNS).
AGENT_MAX_TURNS = env.int("AGENT_MAX_TURNS", default=100)
AGENT_CONTEXT_WINDOW_TOKENS = env.int("AGENT_CONTEXT_WINDOW_TOKENS", default=1_048_576)
AGENT_COMPRESSION_THRESHOLD = env.float("AGENT_COMPRESSION_THRESHOLD", default=0.5)
AGENT_INVALID_ANSWER_RETRY_DELAY_SECONDS = env.float(
    "AGENT_INVALID_ANSWER_RETRY_DELAY_SECONDS", default=1.0
)
SSE_KEEPALIVE_SECONDS = env.float("SSE_KEEPALIVE_SECONDS", default=15)
# On SIGTERM running turns get this long to finish before they are stopped (and kept).
DRAIN_SECONDS = env.float("DRAIN_SECONDS", default=20)
# A worker that stops refreshing its Redis key for this long is dead; its sessions are free.
WORKER_TTL_SECONDS = env.int("WORKER_TTL_SECONDS", default=3)

# Sessions, workspaces and tools.
WORKSPACES_ROOT = Path(env("WORKSPACES_ROOT", default=str(BASE_DIR / "workspaces"))).resolve()
SESSION_TTL_HOURS = env.float("SESSION_TTL_HOURS", default=24)
SHELL_SANDBOX = env("SHELL_SANDBOX", default="bwrap")
SHELL_TIMEOUT_SECONDS = env.float("SHELL_TIMEOUT_SECONDS", default=3600)
SHELL_INACTIVITY_TIMEOUT_SECONDS = env.float("SHELL_INACTIVITY_TIMEOUT_SECONDS", default=300)
# Each shell command's sandbox limits (README "Security model"). Memory is per process.
SANDBOX_MEMORY_BYTES = env_positive_int("SANDBOX_MEMORY_BYTES", 1024**3)
SANDBOX_MAX_PROCESSES = env_positive_int("SANDBOX_MAX_PROCESSES", 256)
SANDBOX_CPU_SECONDS = env_positive_int("SANDBOX_CPU_SECONDS", 60)
SANDBOX_MAX_FILE_BYTES = env_positive_int("SANDBOX_MAX_FILE_BYTES", 256 * 1024**2)
SANDBOX_TMP_BYTES = env_positive_int("SANDBOX_TMP_BYTES", 256 * 1024**2)
# The unprivileged host uid (and gid) a server running as root runs its commands as.
SANDBOX_HOST_UID = env_positive_int("SANDBOX_HOST_UID", 61000)
TOOL_MAX_FILE_BYTES = env.int("TOOL_MAX_FILE_BYTES", default=20 * 1024 * 1024)
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=TOOL_MAX_FILE_BYTES)
DATA_UPLOAD_MAX_MEMORY_SIZE = UPLOAD_MAX_BYTES + 1024
# Per-session workspace quota (apparent size of everything in it); 0 turns it off.
WORKSPACE_MAX_BYTES = env.int("WORKSPACE_MAX_BYTES", default=1024 * 1024 * 1024)
# A chat message is at most 200,000 characters; JSON bodies past this are refused with 413.
JSON_BODY_MAX_BYTES = env.int("JSON_BODY_MAX_BYTES", default=1024 * 1024)

# Accounts, limits and monitoring.
ALLOW_REGISTRATION = env.bool("ALLOW_REGISTRATION", default=False)
# How long a process may use an API key or a JWT's user it read, while nothing about that user
# changed (accounts.credentials; a change is seen by every process at its next request). 0: read
# the database on every request.
CREDENTIALS_CACHE_SECONDS = env.float("CREDENTIALS_CACHE_SECONDS", default=10)
RATE_LIMIT_MAX_REQUESTS = env.int("RATE_LIMIT_MAX_REQUESTS", default=100)
RATE_LIMIT_WINDOW_SECONDS = env.int("RATE_LIMIT_WINDOW_SECONDS", default=60)
LOGIN_RATE_LIMIT_MAX = env.int("LOGIN_RATE_LIMIT_MAX", default=10)
LOGIN_RATE_LIMIT_WINDOW_SECONDS = env.int("LOGIN_RATE_LIMIT_WINDOW_SECONDS", default=300)
# How many proxies of ours stand in front and append to X-Forwarded-For; 0 trusts the header not at
# all (a client could otherwise pick the address its rate limits and audit records are kept under).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
MONITORING_ENABLED = env.bool("MONITORING_ENABLED", default=True)
WS_AUTH_TIMEOUT_SECONDS = env.float("WS_AUTH_TIMEOUT_SECONDS", default=10)
WS_MAX_FRAME_BYTES = env.int("WS_MAX_FRAME_BYTES", default=1024 * 1024)
SERVE_STATIC = env.bool("SERVE_STATIC", default=True)
# Error events without a signed-in user, per minute: from one address, and from everyone. Past
# these, one `error_flood` event says so and the rest go to the log only (anyone can cause them).
ANON_ERROR_EVENTS_PER_IP = env.int("ANON_ERROR_EVENTS_PER_IP", default=10)
ANON_ERROR_EVENTS_MAX = env.int("ANON_ERROR_EVENTS_MAX", default=100)
ANON_ERROR_WINDOW_SECONDS = env.int("ANON_ERROR_WINDOW_SECONDS", default=60)
