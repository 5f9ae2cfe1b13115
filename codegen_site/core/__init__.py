"""The shared base every app imports: config, errors, SSE framing, API view plumbing,
database helpers, throttling, workspace paths. It imports nothing above it."""
