from django.urls import path

from files_app import api

urlpatterns = [
    path("files/write", api.WriteView.as_view(), name="files-write"),
    path("files/read", api.ReadView.as_view(), name="files-read"),
    path("files/backups", api.BackupListView.as_view(), name="files-backups"),
    path("files/restore", api.RestoreView.as_view(), name="files-restore"),
    path("files/tree", api.TreeView.as_view(), name="files-tree"),
    path("files/diff", api.DiffView.as_view(), name="files-diff"),
]
