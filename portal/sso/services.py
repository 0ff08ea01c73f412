"""SSO rules: who an ID token signs in, linking by proof, just-in-time members.

Nothing here reads the request or commits; the view commits once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from portal.audit.context import Actor
from portal.audit.services import record
from portal.auth import clock
from portal.auth.models import User
from portal.auth.services import find_user_by_email, normalise_email
from portal.extensions import db
from portal.security.permissions import Role
from portal.sso.models import SsoIdentity, SsoPolicy
from portal.sso.providers import Provider

log = logging.getLogger("coffre.security")

LINK_SECONDS = 600


@dataclass(frozen=True)
class Outcome:
    """``kind`` is "login", "link_required" or "refused" (with ``reason``)."""

    kind: str
    user: User | None = None
    reason: str | None = None
    created: bool = False
    provider_mfa: bool = False


def _for(user: User, actor: Actor) -> Actor:
    return Actor(user.organization_id, user.id, actor.ip, actor.user_agent)


def email_domain(email: str | None) -> str | None:
    if not email or email.count("@") != 1:
        return None
    return email.rsplit("@", 1)[1].strip().lower() or None


def policy_for(organization_id: int) -> SsoPolicy | None:
    return db.session.execute(
        select(SsoPolicy).where(SsoPolicy.organization_id == organization_id)
    ).scalar_one_or_none()


def _provider_allowed(policy: SsoPolicy | None, provider: Provider) -> bool:
    # With no policy, an existing link keeps working: the member proved their password
    # and second factor to make it.
    return policy is None or not policy.providers or provider.name in policy.providers


def _claims_mfa(claims: dict[str, Any]) -> bool:
    amr = claims.get("amr")
    if isinstance(amr, list) and any(m in ("mfa", "otp", "hwk", "swk", "fido") for m in amr):
        return True
    acr = claims.get("acr")
    return isinstance(acr, str) and ("mfa" in acr.lower() or acr.endswith("silver") or acr.endswith("gold"))


def _details(provider: Provider, claims: dict[str, Any], **extra: Any) -> dict[str, Any]:
    details = {"provider": provider.name, "sub": str(claims.get("sub", ""))[:255]}
    for key in ("amr", "acr"):
        if key in claims:
            details[key] = claims[key]
    details.update(extra)
    return details


def refuse(
    reason: str,
    provider: Provider,
    actor: Actor,
    *,
    claims: dict[str, Any] | None = None,
    organization_id: int | None = None,
    user: User | None = None,
) -> Outcome:
    """Journal a refused SSO sign-in where the identity or its domain points, else log it."""
    claims = claims or {}
    if user is None and organization_id is None:
        email = claims.get("email")
        if isinstance(email, str):
            user = find_user_by_email(email)
        if user is None:
            identity = _identity(provider, claims)
            user = identity.user if identity else None
        if user is None:
            orgs = _orgs_allowing(email_domain(email if isinstance(email, str) else None))
            if len(orgs) == 1:
                organization_id = orgs[0].organization_id
    details = _details(provider, claims, reason=reason)
    if user is not None:
        record(
            "sso.login_failed",
            _for(user, actor),
            target_type="user",
            target_id=user.id,
            target_label=user.email,
            details=details,
        )
    elif organization_id is not None:
        record(
            "sso.login_failed",
            Actor(organization_id, None, actor.ip, actor.user_agent),
            target_label=str(claims.get("email", ""))[:254] or None,
            details=details,
        )
    else:
        log.warning("security.sso_refused %s", json.dumps({**details, "ip": actor.ip}, sort_keys=True))
    return Outcome("refused", reason=reason)


def _identity(provider: Provider, claims: dict[str, Any]) -> SsoIdentity | None:
    issuer, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(issuer, str) or not isinstance(sub, str):
        return None
    return db.session.execute(
        select(SsoIdentity).where(SsoIdentity.issuer == issuer, SsoIdentity.subject == sub)
    ).scalar_one_or_none()


def _orgs_allowing(domain: str | None) -> list[SsoPolicy]:
    if not domain:
        return []
    policies = db.session.execute(select(SsoPolicy)).scalars()
    return [p for p in policies if domain in p.domains]


def resolve(provider: Provider, claims: dict[str, Any], actor: Actor) -> Outcome:
    """Decide what a verified ID token may do. Never links or matches by e-mail alone."""
    identity = _identity(provider, claims)
    if identity is not None:
        user = identity.user
        if not user.active:
            return refuse("inactive", provider, actor, claims=claims, user=user)
        policy = policy_for(user.organization_id)
        if not _provider_allowed(policy, provider):
            return refuse("provider_not_allowed", provider, actor, claims=claims, user=user)
        identity.last_used_at = clock.now()
        trusted = bool(policy and policy.trust_provider_mfa and _claims_mfa(claims))
        return Outcome("login", user=user, provider_mfa=trusted)

    email = claims.get("email")
    email = normalise_email(email) if isinstance(email, str) else None
    existing = find_user_by_email(email) if email else None
    if existing is not None:
        if not existing.active:
            return refuse("inactive", provider, actor, claims=claims, user=existing)
        if not _provider_allowed(policy_for(existing.organization_id), provider):
            return refuse("provider_not_allowed", provider, actor, claims=claims, user=existing)
        # The address alone proves nothing: another provider may assert it too. The member
        # proves their password and second factor before the identity is linked.
        record(
            "sso.link_requested",
            _for(existing, actor),
            target_type="user",
            target_id=existing.id,
            target_label=existing.email,
            details=_details(provider, claims),
        )
        return Outcome("link_required", user=existing)

    domain = email_domain(email)
    policies = [p for p in _orgs_allowing(domain)]
    if not policies:
        return refuse("unknown_domain", provider, actor, claims=claims)
    if len(policies) > 1:
        # Two organisations claim the domain: creating the member in either would be a guess.
        for policy in policies:
            refuse("ambiguous_domain", provider, actor, claims=claims, organization_id=policy.organization_id)
        return Outcome("refused", reason="ambiguous_domain")
    policy = policies[0]
    if not policy.jit_enabled:
        return refuse("jit_disabled", provider, actor, claims=claims, organization_id=policy.organization_id)
    if not _provider_allowed(policy, provider):
        return refuse("provider_not_allowed", provider, actor, claims=claims, organization_id=policy.organization_id)
    if claims.get("email_verified") is not True:
        return refuse("email_unverified", provider, actor, claims=claims, organization_id=policy.organization_id)
    name = claims.get("name") if isinstance(claims.get("name"), str) else None
    at = clock.now()
    user = User(
        organization_id=policy.organization_id,
        email=email,
        name=(name or email.split("@")[0]).strip()[:120],
        role=Role(policy.default_role).value,
        password_hash=None,
        email_confirmed_at=at,  # the provider vouched for it (email_verified)
    )
    db.session.add(user)
    db.session.flush()
    _add_identity(user, provider, claims)
    record(
        "sso.member_created",
        _for(user, actor),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details=_details(provider, claims, role=user.role),
    )
    trusted = bool(policy.trust_provider_mfa and _claims_mfa(claims))
    return Outcome("login", user=user, created=True, provider_mfa=trusted)


def _add_identity(user: User, provider: Provider, claims: dict[str, Any]) -> SsoIdentity:
    email = claims.get("email")
    identity = SsoIdentity(
        organization_id=user.organization_id,
        user_id=user.id,
        provider=provider.name,
        issuer=claims["iss"],
        subject=claims["sub"],
        email=normalise_email(email)[:254] if isinstance(email, str) else None,
        last_used_at=clock.now(),
    )
    db.session.add(identity)
    db.session.flush()
    return identity


def pending_link(provider: Provider, claims: dict[str, Any], user: User) -> dict[str, Any]:
    """What the browser carries (in the signed session) until the member proves themselves."""
    return {
        "provider": provider.name,
        "iss": claims["iss"],
        "sub": claims["sub"],
        "email": claims.get("email"),
        "user_id": user.id,
        "exp": clock.now().timestamp() + LINK_SECONDS,
    }


def complete_link(user: User, link: Any, provider: Provider | None, actor: Actor) -> SsoIdentity | None:
    """Link after the member's own login succeeded; only the member the link was for."""
    if not isinstance(link, dict) or provider is None or link.get("user_id") != user.id:
        return None
    if not isinstance(link.get("exp"), (int, float)) or link["exp"] < clock.now().timestamp():
        return None
    claims = {"iss": link.get("iss"), "sub": link.get("sub"), "email": link.get("email")}
    if _identity(provider, claims) is not None:
        return None
    identity = _add_identity(user, provider, claims)
    record(
        "sso.linked",
        _for(user, actor),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"provider": provider.name, "sub": identity.subject},
    )
    return identity


def identities_of(user: User) -> list[SsoIdentity]:
    return list(
        db.session.execute(
            select(SsoIdentity).where(SsoIdentity.user_id == user.id).order_by(SsoIdentity.created_at)
        ).scalars()
    )


class LastWayInError(Exception):
    pass


def unlink(user: User, identity_id: int, actor: Actor) -> bool:
    # Lock the member's row: two concurrent unlinks of their last two identities would
    # otherwise both see "one left" and leave none.
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    identity = db.session.execute(
        select(SsoIdentity).where(SsoIdentity.id == identity_id, SsoIdentity.user_id == user.id)
    ).scalar_one_or_none()
    if identity is None:
        return False
    if user.password_hash is None and len(identities_of(user)) <= 1:
        raise LastWayInError()
    db.session.delete(identity)
    record(
        "sso.unlinked",
        actor,
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"provider": identity.provider, "sub": identity.subject},
    )
    db.session.flush()
    return True


def may_reauth_by_sso(user: User) -> bool:
    """Only a member with neither password nor second factor re-proves through the provider:
    for anyone else that would be a weaker proof than the one Coffre asks."""
    return user.password_hash is None and not user.has_two_factor


def record_login(
    user: User,
    provider: Provider,
    claims: dict[str, Any],
    actor: Actor,
    *,
    second_factor_due: bool,
    outcome: str | None = None,
) -> None:
    record(
        "sso.login",
        _for(user, actor),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details=_details(
            provider, claims, outcome=outcome or ("second_factor_due" if second_factor_due else "signed_in")
        ),
    )


def save_policy(
    organization_id: int,
    actor: Actor,
    *,
    allowed_providers: list[str],
    allowed_domains: list[str],
    jit_enabled: bool,
    default_role: str,
    sso_required: bool,
    trust_provider_mfa: bool,
) -> SsoPolicy:
    policy = db.session.execute(
        select(SsoPolicy).where(SsoPolicy.organization_id == organization_id).with_for_update()
    ).scalar_one_or_none()
    if policy is None:
        policy = SsoPolicy(organization_id=organization_id, allowed_providers="", allowed_domains="")
        db.session.add(policy)
    values = {
        "allowed_providers": " ".join(sorted(set(allowed_providers))),
        "allowed_domains": " ".join(sorted(set(allowed_domains))),
        "jit_enabled": bool(jit_enabled),
        "default_role": Role(default_role).value if default_role != Role.ADMIN.value else Role.READER.value,
        "sso_required": bool(sso_required),
        "trust_provider_mfa": bool(trust_provider_mfa),
    }
    changes = {key: value for key, value in values.items() if getattr(policy, key, None) != value}
    for key, value in values.items():
        setattr(policy, key, value)
    policy.updated_at = clock.now()
    db.session.flush()
    if changes:
        record("sso.policy_changed", actor, target_type="organization", target_id=organization_id, details=changes)
    return policy


def password_login_refused(user: User, actor: Actor, channel: str) -> bool:
    """SSO required: members other than admins may not use their password (web or API).

    Admins keep it as the break-glass way in when the provider is down.
    """
    policy = policy_for(user.organization_id)
    if policy is None or not policy.sso_required or user.role == Role.ADMIN.value:
        return False
    record(
        "user.login_failed",
        _for(user, actor),
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        details={"reason": "sso_required", "channel": channel},
    )
    return True
