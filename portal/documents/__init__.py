"""Documents: armoires, folders, files, versions, encryption at rest."""
