"""Tenancy: a row of organisation A can never be read through organisation B."""

from __future__ import annotations

import pytest
from werkzeug.exceptions import NotFound

from portal.documents.models import Armoire
from portal.extensions import db
from portal.security.tenancy import OrgOwned, get_scoped, get_scoped_or_404, scoped


@pytest.fixture
def two_orgs(make_org):
    a, b = make_org("Organisation A"), make_org("Organisation B")
    armoire = Armoire(organization_id=a.id, name="Paie")
    db.session.add(armoire)
    db.session.commit()
    return a, b, armoire


def test_scoped_query_only_sees_its_organisation(two_orgs):
    a, b, armoire = two_orgs
    assert db.session.execute(scoped(Armoire, a.id)).scalars().all() == [armoire]
    assert db.session.execute(scoped(Armoire, b.id)).scalars().all() == []


def test_get_scoped_or_404_hides_other_organisations(two_orgs):
    a, b, armoire = two_orgs
    assert get_scoped_or_404(Armoire, armoire.id, a.id) is armoire
    with pytest.raises(NotFound):
        get_scoped_or_404(Armoire, armoire.id, b.id)


@pytest.mark.parametrize("bad_id", ["abc", None, "1 OR 1=1", -1, 10**30])
def test_malformed_ids_are_simply_absent(two_orgs, bad_id):
    a, _b, _armoire = two_orgs
    assert get_scoped(Armoire, bad_id, a.id) is None


def test_a_scoped_query_needs_an_organisation():
    with pytest.raises(ValueError):
        scoped(Armoire, 0)


def test_every_organisation_owned_model_is_tenant_scoped(app):
    """Any model with an organization_id column must come from OrgOwned (one scoping path).

    Two append-only ledgers are the exception, on purpose: the journal (whose platform chain
    has no organisation) and the shred ledger (which must outlive the organisation it names).
    """
    ledgers = {"journal_activite", "registre_destructions"}
    for mapper in db.Model.registry.mappers:
        model = mapper.class_
        if "organization_id" in mapper.columns and model.__tablename__ not in ledgers:
            assert issubclass(model, OrgOwned), f"{model.__name__} carries organization_id without OrgOwned"


def test_another_organisations_member_gets_404_on_a_page(login_as, make_user, two_orgs, app):
    _a, b, armoire = two_orgs
    intruder = login_as(make_user("admin", org=b))
    assert intruder.get(f"/armoires/{armoire.id}").status_code == 404


def test_probing_another_organisations_id_is_recorded(app, login_as, make_user, two_orgs):
    from sqlalchemy import select

    from portal.audit.models import AuditEntry

    _a, b, armoire = two_orgs
    intruder = make_user("admin", org=b)
    with app.test_request_context():
        from flask_login import login_user

        login_user(intruder)
        with pytest.raises(NotFound):
            get_scoped_or_404(Armoire, armoire.id)
        with pytest.raises(NotFound):
            get_scoped_or_404(Armoire, armoire.id + 1000)  # exists nowhere: not a probe
    entries = db.session.execute(select(AuditEntry).where(AuditEntry.action == "security.not_found")).scalars().all()
    assert len(entries) == 1
    assert entries[0].organization_id == b.id and entries[0].details["target_id"] == armoire.id
