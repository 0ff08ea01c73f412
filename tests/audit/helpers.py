from __future__ import annotations

from portal.audit.context import Actor
from portal.audit.services import record
from portal.extensions import db


def add_entries(org, user=None, count: int = 5, action: str = "file.added", label: str = "fichier-{n}.pdf", **kw):
    """Commit ``count`` real journal entries for ``org``."""
    actor = Actor(org.id, user.id if user else None, ip="127.0.0.1", user_agent="pytest")
    entries = []
    target_type = kw.get("target_type", "file")
    for n in range(1, count + 1):
        entries.append(record(action, actor, target_type=target_type, target_id=n, target_label=label.format(n=n)))
    db.session.commit()
    return entries
