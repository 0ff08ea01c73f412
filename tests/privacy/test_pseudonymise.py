"""Pseudonymising a departed member: the names go, the journal keeps verifying."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy import select, update

from portal.api.models import ApiToken
from portal.audit.context import Actor
from portal.audit.models import AuditChainHead, AuditEntry
from portal.audit.services import canonical_content, chain_id_for, compute_hash, record
from portal.audit.verification import verify_chain
from portal.auth.models import AccountToken, User, UserSession
from portal.auth.sessions import open_session_for
from portal.database import utcnow
from portal.extensions import db
from portal.users import services as user_services
from tests.conftest import csrf

NAME = "Koffi Mensah"
EMAIL = "koffi.mensah@example.test"


def _legacy_entry(org, action: str, *, user_id=None, target_id=None, label=None) -> AuditEntry:
    """An entry as the journal wrote them before hash version 2 (the hash covers the label)."""
    chain_id = chain_id_for(org.id)
    head = db.session.get(AuditChainHead, chain_id)
    if head is None:
        head = AuditChainHead(chain_id=chain_id, seq=0, head_hash="0" * 64)
        db.session.add(head)
        db.session.flush()
    fields = {
        "chain_id": chain_id,
        "seq": head.seq + 1,
        "organization_id": org.id,
        "user_id": user_id,
        "action": action,
        "target_type": "user",
        "target_id": target_id,
        "target_label": label,
        "created_at": utcnow(),
        "ip": "198.51.100.7",
        "user_agent": "legacy",
        "details": None,
    }
    entry_hash = compute_hash(head.head_hash, canonical_content(**fields))
    entry = AuditEntry(**fields, prev_hash=head.head_hash, entry_hash=entry_hash, hash_version=1)
    db.session.add(entry)
    head.seq, head.head_hash = fields["seq"], entry_hash
    db.session.commit()
    return entry


def _departed_member(app, org, admin, make_user):
    """A member with a history: invited, signed in, uploaded, named in an old entry, then deactivated."""
    member = make_user("contributeur", org=org, name=NAME, email=EMAIL)
    admin_actor = Actor(org.id, admin.id, ip="192.0.2.1", user_agent="pytest")
    _legacy_entry(org, "user.role_changed", user_id=admin.id, target_id=member.id, label=EMAIL)
    _legacy_entry(org, "user.login_failed", target_id=None, label=NAME.upper())
    record("user.invited", admin_actor, target_type="user", target_id=member.id, target_label=EMAIL)
    member_actor = Actor(org.id, member.id, ip="192.0.2.9", user_agent="Firefox")
    record("user.login", member_actor, target_type="user", target_id=member.id, target_label=EMAIL)
    record("file.added", member_actor, target_type="file", target_id=1, target_label="facture.pdf")
    with app.test_request_context():
        from flask import session

        open_session_for(member, session)
    db.session.add(
        ApiToken(
            organization_id=org.id,
            user_id=member.id,
            name="portable de Koffi",
            token_hash="a" * 64,
            prefix="cof_abc",
            expires_at=utcnow() + timedelta(days=30),
        )
    )
    db.session.commit()
    user_services.deactivate(member, admin_actor)
    db.session.commit()
    return member


def _names_left() -> list[str]:
    """Every stored text that still names the member, in the journal and the account tables."""
    found = []
    needles = ("koffi", "mensah")
    for entry in db.session.execute(select(AuditEntry)).scalars():
        text = " ".join(
            str(value or "") for value in (entry.target_label, json.dumps(entry.details), entry.label_sealed)
        ).lower()
        if any(needle in text for needle in needles):
            found.append(f"journal {entry.id}: {text}")
    for table in ("utilisateurs", "sessions_utilisateurs", "jetons_compte", "jetons_api", "identites_sso"):
        for row in db.session.execute(sa.text(f"SELECT * FROM {table}")).mappings():
            text = " ".join(str(value) for value in row.values()).lower()
            if any(needle in text for needle in needles):
                found.append(f"{table}: {text}")
    return found


def _pseudonymise(client, member):
    return client.post(f"/users/{member.id}/pseudonymiser", data={"csrf_token": csrf(client, "/users")})


def test_pseudonymised_member_is_gone_and_the_journal_still_verifies(app, org, admin, admin_client, make_user):
    member = _departed_member(app, org, admin, make_user)
    assert verify_chain(org.id, checkpoint=False).ok
    assert _names_left()  # the test can see a name when one is there

    response = _pseudonymise(admin_client, member)
    assert response.status_code == 303

    db.session.expire_all()
    assert _names_left() == []
    member = db.session.get(User, member.id)
    assert member.name.startswith("Ancien membre ") and member.email.endswith("@pseudonyme.invalid")
    assert member.pseudonymised_at is not None and member.password_hash is None
    assert db.session.execute(select(AccountToken).where(AccountToken.user_id == member.id)).first() is None
    session_row = db.session.execute(select(UserSession).where(UserSession.user_id == member.id)).scalar_one()
    assert session_row.ip is None and session_row.revoked_at is not None
    labels = db.session.execute(
        select(AuditEntry.target_label).where(AuditEntry.target_type == "user", AuditEntry.target_id == member.id)
    ).scalars()
    assert set(labels) == {member.name}
    done = db.session.execute(select(AuditEntry).where(AuditEntry.action == "user.pseudonymised")).scalar_one()
    # Two legacy entries, the invitation, the sign-in and the deactivation.
    assert done.user_id == admin.id and done.details == {"journal_entries": 5}

    assert verify_chain(org.id, checkpoint=False).ok
    result = app.test_cli_runner().invoke(args=["journal", "verify", "--organization", str(org.id)])
    assert result.exit_code == 0, result.output


def test_a_label_edited_after_pseudonymisation_still_fails(app, org, admin, admin_client, make_user):
    member = _departed_member(app, org, admin, make_user)
    assert _pseudonymise(admin_client, member).status_code == 303
    entries = db.session.execute(
        select(AuditEntry).where(AuditEntry.label_proof.is_not(None)).order_by(AuditEntry.id)
    ).scalars()
    legacy, recent = None, None
    for entry in entries:
        if entry.hash_version == 1 and legacy is None:
            legacy = entry
        if entry.hash_version == 2 and recent is None:
            recent = entry
    assert legacy is not None and recent is not None
    for entry in (recent, legacy):
        db.session.execute(
            sa.text("UPDATE journal_activite SET target_label = 'Quelqu''un d''autre' WHERE id = :id"), {"id": entry.id}
        )
        db.session.commit()
        result = verify_chain(org.id, checkpoint=False)
        assert (result.problem.kind, result.problem.entry_id) == ("altered", entry.id)
        db.session.execute(
            sa.text("UPDATE journal_activite SET target_label = :label WHERE id = :id"),
            {"label": member.name if entry is recent else db.session.get(User, member.id).name, "id": entry.id},
        )
        db.session.commit()
    assert verify_chain(org.id, checkpoint=False).ok
    # A proof copied onto another entry proves nothing there.
    other = db.session.execute(
        select(AuditEntry).where(AuditEntry.hash_version == 2, AuditEntry.label_proof.is_(None)).limit(1)
    ).scalar_one()
    db.session.execute(
        update(AuditEntry)
        .where(AuditEntry.id == other.id)
        .values(label_proof=recent.label_proof, target_label=recent.target_label)
    )
    db.session.commit()
    result = verify_chain(org.id, checkpoint=False)
    assert (result.problem.kind, result.problem.entry_id) == ("altered", other.id)


def test_an_active_member_is_not_pseudonymised(app, org, admin_client, make_user):
    member = make_user("lecteur", org=org, name=NAME, email=EMAIL)
    response = _pseudonymise(admin_client, member)
    assert response.status_code == 409
    db.session.expire_all()
    assert db.session.get(User, member.id).name == NAME


def test_pseudonymising_twice_is_a_conflict(app, org, admin, admin_client, make_user):
    member = _departed_member(app, org, admin, make_user)
    assert _pseudonymise(admin_client, member).status_code == 303
    assert _pseudonymise(admin_client, member).status_code == 409


def test_pseudonymisation_needs_an_admin_and_a_recent_proof(app, org, admin, admin_client, reader_client, make_user):
    member = _departed_member(app, org, admin, make_user)
    assert _pseudonymise(reader_client, member).status_code == 403
    db.session.execute(update(UserSession).values(reauth_at=utcnow() - timedelta(hours=2)))
    db.session.commit()
    response = _pseudonymise(admin_client, member)
    assert response.status_code == 401
    db.session.expire_all()
    assert db.session.get(User, member.id).name == NAME


def test_another_organisations_member_is_a_404(app, admin_client, make_org, make_user):
    stranger = make_user("lecteur", org=make_org("Autre"), active=False)
    assert _pseudonymise(admin_client, stranger).status_code == 404


def test_the_cli_pseudonymises_a_departed_member(app, org, admin, make_user):
    member = _departed_member(app, org, admin, make_user)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["privacy", "pseudonymise", "--user", str(member.id)])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert _names_left() == []
    assert verify_chain(org.id, checkpoint=False).ok
    again = runner.invoke(args=["privacy", "pseudonymise", "--user", str(member.id)])
    assert again.exit_code == 1 and "already pseudonymised" in again.output


def test_a_pseudonymised_member_cannot_be_reactivated(app, org, admin, admin_client, make_user):
    member = _departed_member(app, org, admin, make_user)
    assert _pseudonymise(admin_client, member).status_code == 303
    response = admin_client.post(f"/users/{member.id}/reactivate", data={"csrf_token": csrf(admin_client, "/users")})
    assert response.status_code == 409
    db.session.expire_all()
    assert db.session.get(User, member.id).active is False
