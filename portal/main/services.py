"""Figures for the home page."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func

from portal.auth.models import User
from portal.documents.models import Armoire
from portal.extensions import db
from portal.security.tenancy import scoped


@dataclass(frozen=True)
class HomeSummary:
    armoires: list[Armoire]
    member_count: int


def home_summary(organization_id: int) -> HomeSummary:
    armoires = list(db.session.execute(scoped(Armoire, organization_id).order_by(Armoire.name)).scalars())
    members = db.session.execute(
        scoped(User, organization_id).where(User.active.is_(True)).with_only_columns(func.count())
    ).scalar_one()
    return HomeSummary(armoires=armoires, member_count=members)


def set_user_locale(user: User, language: str) -> None:
    user.locale = language
