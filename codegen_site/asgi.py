import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codegen_site.settings")

django_application = get_asgi_application()

# Serve /static/ (admin, API docs, UI assets) from the app itself: a local
# service has no separate web server in front of it.
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

application = ASGIStaticFilesHandler(django_application)
