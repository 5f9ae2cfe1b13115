"""/rag/index, /rag/status, /rag/search: validate, call rag.services, shape the reply."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from codegen_site.core.serializers import ErrorSerializer
from rag import services
from rag.serializers import (
    IndexQuerySerializer,
    IndexQueuedSerializer,
    IndexResultSerializer,
    SearchHitSerializer,
    SearchRequestSerializer,
    StatusSerializer,
)


class IndexView(APIView):
    @extend_schema(
        request=None,
        parameters=[IndexQuerySerializer],
        responses={200: IndexResultSerializer, 202: IndexQueuedSerializer, 400: ErrorSerializer,
                   404: ErrorSerializer, 409: ErrorSerializer, 502: ErrorSerializer, 503: ErrorSerializer},
        summary="Index a directory for code search (incremental)",
    )
    def post(self, request):
        query = IndexQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        path = query.validated_data["path"]
        if query.validated_data["background"]:
            from django_q.tasks import async_task

            run = services.start_run(path, background=True)
            transaction.on_commit(lambda: async_task("rag.tasks.run_index", run.pk, task_name=f"rag-index-{run.pk}"))
            return Response({"status": "queued", "path": run.path, "run_id": run.pk},
                            status=status.HTTP_202_ACCEPTED)
        return Response(services.index_path(path))


class StatusView(APIView):
    @extend_schema(responses={200: StatusSerializer}, summary="State of the code index")
    def get(self, request):
        return Response(StatusSerializer(services.status()).data)


class SearchView(APIView):
    @extend_schema(
        request=SearchRequestSerializer,
        responses={200: SearchHitSerializer(many=True), 400: ErrorSerializer, 409: ErrorSerializer,
                   502: ErrorSerializer, 503: ErrorSerializer},
        summary="Search the indexed code (hybrid: vectors and BM25 fused by reciprocal rank)",
    )
    def post(self, request):
        body = SearchRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        hits = services.search(data["query"], data.get("limit"), data.get("path") or None, data["mode"])
        return Response(SearchHitSerializer(hits, many=True).data)
