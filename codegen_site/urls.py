from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from codegen_site import ui, views
from codegen_site.routes import browser

# The browser UI's pages (codegen_site/ui.py); the API's paths are below.
ui_patterns = [
    path("chat", ui.chat, name="ui-chat"),
    path("workflow", ui.workflow, name="ui-workflow"),
    path("improve", ui.improve, name="ui-improve"),
    path("changes", ui.changes, name="ui-changes"),
    path("search", ui.search, name="ui-search"),
    path("files", ui.files, name="ui-files"),
    path("settings", ui.config, name="ui-settings"),
    path("tokens", ui.tokens, name="ui-tokens"),
]

urlpatterns = [
    browser(path("", ui.index, name="index")),
    browser(path("ui/", include(ui_patterns))),
    browser(path("login", ui.login, name="login")),
    browser(path("logout", ui.logout, name="logout")),
    path("health", views.HealthView.as_view(), name="health"),
    path("models", views.ModelsView.as_view(), name="models"),
    path("config", views.ConfigView.as_view(), name="config"),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/redoc", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    browser(path("admin/", admin.site.urls)),
    path("", include("chat.urls")),
    path("", include("workflow.urls")),
    path("", include("improve.urls")),
    path("", include("rag.urls")),
    path("", include("files_app.urls")),
]

handler400 = "codegen_site.core.errors.handler400"
handler403 = "codegen_site.core.errors.handler403"
handler404 = "codegen_site.core.errors.handler404"
handler500 = "codegen_site.core.errors.handler500"
