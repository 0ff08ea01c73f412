"""Web plumbing shared by every blueprint: HTMX rendering, errors, request context."""
