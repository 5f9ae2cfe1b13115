"""The paths the optional API token (CODEGEN_API_TOKEN) leaves open: health checks and
static files. Browser pages are open to it too, as they ask for a login themselves
(codegen_site.routes.browser_paths). The middleware enforces this
(codegen_site.middleware), the OpenAPI schema documents it (codegen_site.core.schema)."""

OPEN_PREFIXES = ("/health", "/static/")
