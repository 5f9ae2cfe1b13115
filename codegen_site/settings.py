"""Django settings. Deployment settings come from the environment (django-environ,
optional .env file); application behaviour comes from codegen_site.core.config (TOML)."""

from pathlib import Path

import environ

from codegen_site.core.config import django_log_level, get_config
from codegen_site.core.sections import section
from improve.config import QueueSettings

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env("CODEGEN_DATA_DIR", default=str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
# The user's project. Never the server's own checkout by default: a file written there could
# shadow a module the server imports (`make run WORKSPACE=~/code/project` names another).
WORKSPACE_ROOT = Path(env("CODEGEN_WORKSPACE_ROOT", default=str(Path.home() / "codegen-workspace"))).resolve()
WORKSPACE_ROOT.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=False)
# A local service: without an explicit key, one is generated once and kept in the data dir.
_secret_file = DATA_DIR / "secret_key"
if env("SECRET_KEY", default=""):
    SECRET_KEY = env("SECRET_KEY")
else:
    if not _secret_file.exists():
        from django.core.management.utils import get_random_secret_key

        _secret_file.write_text(get_random_secret_key())
        _secret_file.chmod(0o600)
    SECRET_KEY = _secret_file.read_text().strip()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
# Origins trusted besides the server's own (which follow the address it serves on:
# codegen_site.middleware), e.g. a UI served from elsewhere.
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Optional bearer token for the API; empty means no token is required.
API_TOKEN = env("CODEGEN_API_TOKEN", default="")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    # the core's tables: shared settings and their history, named locks
    "codegen_site.core",
    "chat",
    "workflow",
    "improve",
    "rag",
    "files_app",
]

MIDDLEWARE = [
    # Host (ALLOWED_HOSTS) and Origin checks on every path, API included.
    "codegen_site.middleware.EdgeMiddleware",
    "codegen_site.middleware.ApiTokenMiddleware",
    "codegen_site.middleware.BrowserOnlyMiddleware",
]
# Cookie-based middleware for the admin and the UI pages only (see BrowserOnlyMiddleware).
BROWSER_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# The admin's checks look for its middleware in MIDDLEWARE; it is in BROWSER_MIDDLEWARE.
SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410"]

ROOT_URLCONF = "codegen_site.urls"
APPEND_SLASH = False

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

ASGI_APPLICATION = "codegen_site.asgi.application"
WSGI_APPLICATION = None

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'codegen.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the queue worker and the server write without "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        # IMMEDIATE: a transaction takes the write lock when it begins, so one that reads and then
        # writes waits for another writer instead of failing at once with "database is locked".
        {"timeout": 20, "transaction_mode": "IMMEDIATE",
         "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )

# Each process watches the database and the shared cache in a thread of its own
# (codegen_site.core.monitor): the saved settings' version and what GET /health reports.
PROCESS_MONITOR = True

# ORM calls on streaming hot paths run on pooled threads that keep their connection (codegen_site.core.db).
DB_ASYNC_POOLED = True

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://codegen")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"

APP_CONFIG = get_config()

# The server refuses a larger body before reading it (codegen_site.server).
DATA_UPLOAD_MAX_MEMORY_SIZE = APP_CONFIG["security"]["max_request_bytes"]
# Multi-user mode (security.users): personal tokens and roles (codegen_site.core.users).
USERS = bool(APP_CONFIG["security"].get("users", False))

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON with a nesting limit (security.max_json_depth).
    "DEFAULT_PARSER_CLASSES": ["codegen_site.core.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["codegen_site.core.users.PrincipalAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "codegen_site.core.errors.drf_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["codegen_site.core.throttling.ApiRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "api": APP_CONFIG["security"]["rate_anon"],
        "llm": APP_CONFIG["security"]["rate_llm"],
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "CodeGen AI API",
    "DESCRIPTION": "Local AI coding service: chat, TDD code generation, RAG, project improvement.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        # 400 / 413 / 429 answered in front of the views (parser, size limit, throttle).
        "codegen_site.core.schema.document_edge_answers",
    ],
}

# The improvement queue (improve/services/queue.py). Task rows in the database are the truth;
# the broker only carries "look at task X". ORM broker by default, Redis when configured.
_QUEUE = section(QueueSettings, "improve_queue", config=APP_CONFIG)
Q_CLUSTER = {
    "name": _QUEUE.cluster_name,
    "workers": _QUEUE.workers,
    "timeout": _QUEUE.task_timeout,
    "retry": _QUEUE.task_timeout + 60,
    "max_attempts": 1,
    "ack_failures": True,
    "poll": _QUEUE.poll_seconds,
    "catch_up": False,
}
if _QUEUE.redis_url:
    Q_CLUSTER["redis"] = _QUEUE.redis_url
else:
    Q_CLUSTER["orm"] = "default"

LOG_LEVEL = APP_CONFIG["logging"]["level"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django": {"handlers": ["console"], "level": django_log_level(LOG_LEVEL), "propagate": False},
                "httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
