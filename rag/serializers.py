"""Requests the /rag views validate and the replies they answer with."""

from rest_framework import serializers

from codegen_site.core.serializers import StrictCharField, StrictFloatField, StrictIntegerField
from rag.models import IndexState
from rag.services.search import MODES

MAX_QUERY_CHARS = 4000


class IndexQuerySerializer(serializers.Serializer):
    path = StrictCharField(max_length=4096, trim_whitespace=False,
                           help_text="Directory or file inside the workspace")
    # A query string's booleans are text (true/false): DRF's BooleanField, not StrictBooleanField.
    background = serializers.BooleanField(required=False, default=False,
                                          help_text="Queue the run (202) and follow it in /rag/status")


class IndexResultSerializer(serializers.Serializer):
    status = serializers.CharField()
    path = serializers.CharField()
    files = serializers.IntegerField(help_text="Files chunked and embedded by this run (new or changed)")
    chunks = serializers.IntegerField(help_text="Chunks embedded by this run")
    skipped = serializers.IntegerField(help_text="Unchanged files left as they were")
    removed = serializers.IntegerField(help_text="Indexed files no longer on disk, removed")
    seconds = serializers.FloatField()


class IndexQueuedSerializer(serializers.Serializer):  # from the queued IndexRun
    status = serializers.CharField(help_text="queued")
    path = serializers.CharField()
    run_id = serializers.IntegerField(source="pk")


class ProgressSerializer(serializers.Serializer):
    path = serializers.CharField()
    files_done = serializers.IntegerField()
    files_total = serializers.IntegerField()


class StatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=IndexState.values)
    documents = serializers.IntegerField(help_text="Chunks in the index")
    collection = serializers.CharField()
    files = serializers.IntegerField()
    roots = serializers.ListField(child=serializers.CharField())
    last_indexed = serializers.DateTimeField(allow_null=True)
    progress = ProgressSerializer(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    embedding_provider = serializers.CharField()
    embedding_model = serializers.CharField(allow_blank=True)


class SearchRequestSerializer(serializers.Serializer):
    query = StrictCharField(max_length=MAX_QUERY_CHARS)
    limit = StrictIntegerField(required=False, min_value=1, max_value=100)
    path = StrictCharField(required=False, allow_blank=True, max_length=4096)
    mode = serializers.ChoiceField(choices=list(MODES), required=False, default="hybrid")
    min_score = StrictFloatField(required=False, min_value=0, max_value=1,
                                 help_text="Leave out chunks scoring below this (default rag.min_score); 0: no "
                                           "cut-off, the best chunks whatever their scores")


class SearchHitSerializer(serializers.Serializer):
    path = serializers.CharField()
    start_line = serializers.IntegerField()
    end_line = serializers.IntegerField()
    symbol = serializers.CharField(allow_blank=True)
    content = serializers.CharField(allow_blank=True)
    score = serializers.FloatField(min_value=0, max_value=1,
                                   help_text="How well the chunk matches, 0-1 in every mode: 1 every word of the "
                                             "query in it and its meaning as close as a paraphrase, 0 nothing "
                                             "of either; best first, none below the cut-off")
