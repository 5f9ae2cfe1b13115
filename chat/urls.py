from django.urls import path

from chat import api

urlpatterns = [
    path("chat", api.ChatView.as_view(), name="chat"),
    path("chat/stream", api.ChatStreamView.as_view(), name="chat-stream"),
    path("conversations", api.ConversationListView.as_view(), name="conversations"),
    path("conversations/<uuid:conversation_id>", api.ConversationDetailView.as_view(), name="conversation"),
]
