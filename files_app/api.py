"""Thin views: validate with a serializer, call a service or selector, answer through an
output serializer.

File IO blocks, so these are plain (sync) DRF views."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

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


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class WriteView(APIView):
    @extend_schema(request=WriteRequestSerializer,
                   responses={200: WriteResponseSerializer, 400: ErrorSerializer, 413: ErrorSerializer,
                              429: ErrorSerializer},
                   summary="Write a file atomically, backing up its current content",
                   description="Parent directories are created. Paths outside the workspace or into the "
                               "product's own state (data dir, config/, .git, .venv, .env) are refused with 400; "
                               "content over files.max_file_bytes with 413.")
    def post(self, request):
        body = _valid(WriteRequestSerializer, request.data)
        result = services.write_file(body["path"], body["content"], create_backup=body["create_backup"])
        return Response(WriteResponseSerializer(result).data)


class ReadView(APIView):
    @extend_schema(parameters=[PathQuerySerializer], responses={200: ReadResponseSerializer, **PATH_ERRORS},
                   summary="Read a text file",
                   description="404 when missing; 400 for a directory, a binary file or one over "
                               "files.max_file_bytes.")
    def get(self, request):
        query = _valid(PathQuerySerializer, request.query_params)
        return Response(ReadResponseSerializer(selectors.read_file(query["path"])).data)


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
