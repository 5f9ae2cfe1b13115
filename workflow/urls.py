from django.urls import path

from workflow import api

urlpatterns = [
    path("workflow", api.WorkflowView.as_view(), name="workflow"),
    path("code/run", api.CodeRunView.as_view(), name="code-run"),
]
