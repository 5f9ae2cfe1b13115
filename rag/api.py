"""/rag/index, /rag/status, /rag/search: thin views that validate with a serializer, call a
service, selector or task, and answer through an output serializer."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from codegen_site.core.serializers import ErrorSerializer
from rag import selectors, services, tasks
from rag.serializers import (
    IndexQuerySerializer,
    IndexQueuedSerializer,
    IndexResultSerializer,
    SearchHitSerializer,
    SearchRequestSerializer,
    StatusSerializer,
)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class IndexView(APIView):
    @extend_schema(
        request=None,
        parameters=[IndexQuerySerializer],
        responses={200: IndexResultSerializer, 202: IndexQueuedSerializer, 400: ErrorSerializer,
                   404: ErrorSerializer, 409: ErrorSerializer, 502: ErrorSerializer, 503: ErrorSerializer},
        summary="Index a directory for code search (incremental)",
    )
    def post(self, request):
        query = _valid(IndexQuerySerializer, request.query_params)
        if query["background"]:
            run = services.start_run(query["path"], background=True)
            tasks.queue_index(run)
            return Response(IndexQueuedSerializer(run).data, status=status.HTTP_202_ACCEPTED)
        return Response(IndexResultSerializer(services.index_path(query["path"])).data)


class StatusView(APIView):
    @extend_schema(responses={200: StatusSerializer}, summary="State of the code index")
    def get(self, request):
        return Response(StatusSerializer(selectors.status()).data)


class SearchView(APIView):
    @extend_schema(
        request=SearchRequestSerializer,
        responses={200: SearchHitSerializer(many=True), 400: ErrorSerializer, 409: ErrorSerializer,
                   502: ErrorSerializer, 503: ErrorSerializer},
        summary="Search the indexed code: chunks scored 0-1, best first; an empty list when nothing matches",
    )
    def post(self, request):
        body = _valid(SearchRequestSerializer, request.data)
        hits = services.search(body["query"], body.get("limit"), body.get("path") or None, body["mode"],
                               body.get("min_score"))
        return Response(SearchHitSerializer(hits, many=True).data)
