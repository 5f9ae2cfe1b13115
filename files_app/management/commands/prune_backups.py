"""manage.py prune_backups: apply the backup retention rules of [files]."""

from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import filesizeformat

from files_app import services


class Command(BaseCommand):
    help = ("Delete backups that are neither among the newest --keep-last of their file nor younger than "
            "--keep-days (defaults from [files]; 0 turns a rule off), then stored content no backup uses.")

    def add_arguments(self, parser):
        parser.add_argument("--keep-last", type=int, default=None, help="Newest backups kept per file")
        parser.add_argument("--keep-days", type=float, default=None, help="Backups younger than this are kept")
        parser.add_argument("--dry-run", action="store_true", help="Count what would go, delete nothing")

    def handle(self, *args, keep_last, keep_days, dry_run, **options):
        if (keep_last is not None and keep_last < 0) or (keep_days is not None and keep_days < 0):
            raise CommandError("--keep-last and --keep-days must not be negative")
        result = services.prune_backups(keep_last, keep_days, dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(f"{verb} {result.deleted_backups} backups and {result.deleted_blobs} stored blobs "
                          f"({filesizeformat(result.freed_bytes)}); {result.kept_backups} backups kept.")
