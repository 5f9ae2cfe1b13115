"""Thin views: validate with a serializer, call a service or selector, answer through an
output serializer.

File IO blocks, so most of these are plain (sync) DRF views. A read and a write are the
calls an editor makes all the time, so they skip what a sync view costs (a thread made for
the request, another hop to render the answer): a read is one open and one read on the
event loop, a write runs on a pooled thread that keeps its database connection
(core.db.db_async); both answer with their JSON already rendered."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from codegen_site.core.apiview import AsyncAPIView
from codegen_site.core.db import db_async
from codegen_site.core.schema import BodyRequiredSchema
from codegen_site.core.serializers import ErrorSerializer
from files_app import selectors, services
from files_app.serializers import (
    RESTORE_REQUEST,
    BackupListQuerySerializer,
    BackupListSerializer,
    DiffQuerySerializer,
    DiffResponseSerializer,
    PathQuerySerializer,
    ReadResponseSerializer,
    RestoreRequestSerializer,
    RestoreResponseSerializer,
    TreeQuerySerializer,
    TreeSerializer,
    WriteRequestSerializer,
    WriteResponseSerializer,
)

PATH_ERRORS = {400: ErrorSerializer, 404: ErrorSerializer, 429: ErrorSerializer}


# Answers up to this size are rendered on the event loop; a larger one is rendered the usual
# way, on a thread, so a big file does not hold up the other requests.
INLINE_RENDER_CHARS = 256 * 1024


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _rendered(data: dict) -> HttpResponse:
    """The JSON answer as the API's renderer writes it, already rendered: Django renders a DRF
    Response of an async view on a thread of its own."""
    return HttpResponse(JSONRenderer().render(data), content_type=JSONRenderer.media_type)


def _write(request) -> HttpResponse:
    body = _valid(WriteRequestSerializer, request.data)
    result = services.write_file(body["path"], body["content"], create_backup=body["create_backup"])
    return _rendered(WriteResponseSerializer(result).data)


class WriteView(AsyncAPIView):
    @extend_schema(request=WriteRequestSerializer,
                   responses={200: WriteResponseSerializer, 400: ErrorSerializer, 413: ErrorSerializer,
                              429: ErrorSerializer},
                   summary="Write a file atomically, backing up its current content",
                   description="Parent directories are created. Paths outside the workspace or into the "
                               "product's own state (data dir, config/, .git, .venv, .env) are refused with 400; "
                               "content over files.max_file_bytes with 413.")
    async def post(self, request):
        # The body is parsed on the pooled thread too: it may be as large as files.max_file_bytes.
        return await db_async(_write)(request)


class ReadView(AsyncAPIView):
    @extend_schema(parameters=[PathQuerySerializer], responses={200: ReadResponseSerializer, **PATH_ERRORS},
                   summary="Read a text file",
                   description="404 when missing; 400 for a directory, a binary file or one over "
                               "files.max_file_bytes.")
    async def get(self, request):
        query = _valid(PathQuerySerializer, request.query_params)
        result = selectors.read_file(query["path"])
        data = ReadResponseSerializer(result).data
        return _rendered(data) if len(result.content) <= INLINE_RENDER_CHARS else Response(data)


class BackupListView(APIView):
    @extend_schema(parameters=[BackupListQuerySerializer], responses={200: BackupListSerializer, **PATH_ERRORS},
                   summary="Backups, newest first (all, or one file's with ?path=)")
    def get(self, request):
        query = _valid(BackupListQuerySerializer, request.query_params)
        rows = selectors.list_backups(query.get("path"))[: query["limit"]]
        return Response(BackupListSerializer({"backups": rows}).data)


class RestoreView(APIView):
    schema = BodyRequiredSchema()  # one of the two RestoreRequest shapes; no body is a 400

    @extend_schema(request=RESTORE_REQUEST,
                   responses={200: RestoreResponseSerializer, 409: ErrorSerializer, **PATH_ERRORS},
                   summary="Restore a backup into its file (or into original_path)",
                   description="The current content is backed up first (reason restore); restoring that backup "
                               "undoes the restore. backup_path is as listed by /files/backups.")
    def post(self, request):
        body = _valid(RestoreRequestSerializer, request.data)
        result = services.restore(backup_id=body.get("backup_id"), backup_path=body.get("backup_path"),
                                  original_path=body.get("original_path"))
        return Response(RestoreResponseSerializer(result).data)


class TreeView(APIView):
    @extend_schema(parameters=[TreeQuerySerializer], responses={200: TreeSerializer, **PATH_ERRORS},
                   summary="A directory listing: names, sizes and kinds",
                   description="Honours .gitignore files; leaves out .git, .venv, .env and the product's own "
                               "state; symbolic links are shown, never followed.")
    def get(self, request):
        query = _valid(TreeQuerySerializer, request.query_params)
        return Response(TreeSerializer(services.tree(query["path"], query.get("depth"))).data)


class DiffView(APIView):
    @extend_schema(parameters=[DiffQuerySerializer], responses={200: DiffResponseSerializer, 409: ErrorSerializer,
                                                                **PATH_ERRORS},
                   summary="Unified diff of a backup against the current file")
    def get(self, request):
        query = _valid(DiffQuerySerializer, request.query_params)
        return Response(DiffResponseSerializer(services.diff_backup(query["backup_id"])).data)
