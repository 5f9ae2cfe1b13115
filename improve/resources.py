"""The improve app's process-wide resources, started and closed in one place by the server:

- the analysis's check workers (improve.analysis.workers.AnalysisWorkers), started with the
  server when improve.workers_at_start says so;
- the queue's managed qcluster (improve.services.cluster.ManagedCluster), started again when the
  queue was started before a restart (and by POST /improve/queue/start);
- the lease sweeper (improve.services.lease.LeaseSweeper), which puts back the tasks of workers
  that died.

Each is one object per process, made on first use; `shutdown()` closes them all (the managed
cluster also stops at exit by itself, as any process that started one)."""

from __future__ import annotations

from improve.analysis.workers import analysis_workers, start_if_configured
from improve.services.cluster import managed_cluster
from improve.services.lease import lease_sweeper
from improve.services.queue import resume_if_started


def start_with_server() -> None:
    resume_if_started()
    lease_sweeper().start()
    start_if_configured()


def shutdown() -> None:
    lease_sweeper().close()
    managed_cluster().close()
    analysis_workers().close()
