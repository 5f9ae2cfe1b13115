from django.urls import path

from improve import api

urlpatterns = [
    path("improve/analyze", api.AnalyzeView.as_view(), name="improve-analyze"),
    path("improve/reports", api.ReportListView.as_view(), name="improve-reports"),
    path("improve/reports/<int:report_id>", api.ReportDetailView.as_view(), name="improve-report"),
    # --- improvement runs and the queue ---
    path("improve/run", api.ImproveRunView.as_view(), name="improve-run"),
    path("improve/apply", api.ImproveApplyView.as_view(), name="improve-apply"),
    path("improve/queue/add", api.QueueAddView.as_view(), name="improve-queue-add"),
    path("improve/queue/status", api.QueueStatusView.as_view(), name="improve-queue-status"),
    path("improve/queue/task/<str:task_id>", api.QueueTaskView.as_view(), name="improve-queue-task"),
    path("improve/queue/start", api.QueueStartView.as_view(), name="improve-queue-start"),
    path("improve/queue/stop", api.QueueStopView.as_view(), name="improve-queue-stop"),
    path("improve/queue/clear", api.QueueClearView.as_view(), name="improve-queue-clear"),
    path("improve/queue/change", api.QueueChangeView.as_view(), name="improve-queue-change"),
    # --- project changes ---
    path("improve/change", api.ChangeView.as_view(), name="improve-change"),
    path("improve/changes", api.ChangeListView.as_view(), name="improve-changes"),
    path("improve/change/<uuid:change_id>", api.ChangeDetailView.as_view(), name="improve-change-detail"),
    path("improve/change/<uuid:change_id>/apply", api.ChangeApplyView.as_view(), name="improve-change-apply"),
    path("improve/change/<uuid:change_id>/undo", api.ChangeUndoView.as_view(), name="improve-change-undo"),
    path("improve/queue/events", api.QueueEventsView.as_view(), name="improve-queue-events"),
]
