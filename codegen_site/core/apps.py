from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The core's own tables: the settings every process shares and the named locks."""

    name = "codegen_site.core"
    label = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from codegen_site.core import config, lifeline, monitor, users

        # Each process (and each forked queue worker) starts its monitor at its first config read.
        config.watch_with(monitor.start_in_this_process)
        # A process the server started to live with it (the managed qcluster) ends with it.
        lifeline.watch_from_environment()
        # Conversations, runs, reports and changes belong to the user who made them.
        users.connect_owners()
