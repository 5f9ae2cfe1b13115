from django.contrib import admin

from rag.models import IndexedFile, IndexedRoot, IndexRun


@admin.register(IndexedRoot)
class IndexedRootAdmin(admin.ModelAdmin):
    list_display = ("path", "indexed_at")


@admin.register(IndexedFile)
class IndexedFileAdmin(admin.ModelAdmin):
    list_display = ("path", "language", "embedding_model", "indexed_at")
    list_filter = ("language", "embedding_model")
    search_fields = ("path",)
    exclude = ("tokens",)
    readonly_fields = ("path", "root", "sha256", "language", "chunk_ids", "embedding_model")


@admin.register(IndexRun)
class IndexRunAdmin(admin.ModelAdmin):
    list_display = ("path", "status", "files_done", "files_total", "chunks", "seconds", "created_at")
    list_filter = ("status",)
