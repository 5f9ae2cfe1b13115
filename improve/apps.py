from django.apps import AppConfig


class ImproveConfig(AppConfig):
    name = "improve"
    default_auto_field = "django.db.models.BigAutoField"
