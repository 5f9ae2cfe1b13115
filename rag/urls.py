from django.urls import path

from rag import api

urlpatterns = [
    path("rag/index", api.IndexView.as_view(), name="rag-index"),
    path("rag/status", api.StatusView.as_view(), name="rag-status"),
    path("rag/search", api.SearchView.as_view(), name="rag-search"),
]
