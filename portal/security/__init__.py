"""Cross-cutting security: tenancy scoping, permissions, headers, passwords."""
