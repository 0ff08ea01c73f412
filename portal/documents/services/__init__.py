"""Documents services, one module per concept (see docs/architecture.md).

Callers import the module they need (``from portal.documents.services import uploads``);
this package re-exports nothing. Every function takes explicit arguments (an ``Actor`` for
anything journalled), flushes and never commits; errors are the typed ones of
``portal.documents.errors``.
"""
