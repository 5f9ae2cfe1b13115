"""The improve app's writes and orchestration:

- analysis: POST /improve/analyze (the rule-based pass, the LLM review, the stored report);
- coverage, validation, proposal, apply: one improvement of one file (POST /improve/run, /improve/apply),
  with the workspace copy its sandbox runs get (workspace_copy);
- queue, lease, broker, cluster, feed: the improvement queue (the task rows, the workers' leases, the
  django-q2 messages, the managed qcluster, the live feed)."""
