from django.urls import path

from improve import api

urlpatterns = [
    path("improve/analyze", api.AnalyzeView.as_view(), name="improve-analyze"),
    path("improve/reports", api.ReportListView.as_view(), name="improve-reports"),
    path("improve/reports/<int:report_id>", api.ReportDetailView.as_view(), name="improve-report"),
]
