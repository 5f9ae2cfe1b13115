from django.apps import AppConfig


class FilesAppConfig(AppConfig):
    name = "files_app"
    default_auto_field = "django.db.models.BigAutoField"
