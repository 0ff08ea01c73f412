"""Compliance endpoints of /api/v1: retention rules, event dates, bypass grants, holds, disposition."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Response, jsonify, request
from flask_babel import gettext as _
from flask_login import current_user

from portal.api import bp as api_bp
from portal.api.inputs import MAX_ID, Validator, json_or_form_body
from portal.api.problems import ApiProblem
from portal.compliance import certificates, disposition, grants, holds, rules
from portal.compliance.models import MODES, STARTS, TARGET_TYPES, DestructionCertificate, LegalHold, RetentionRule
from portal.extensions import db
from portal.security.permissions import Permission, requires
from portal.security.tenancy import get_scoped_or_404
from portal.storage.blobs import delete_blobs
from portal.web.context import current_actor

ID = f"int(max={MAX_ID})"


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def rule_body(rule: RetentionRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "target_type": rule.target_type,
        "target_id": rule.target_id,
        "mode": rule.mode,
        "duration_days": rule.duration_days,
        "from": rule.counted_from,
        "created_at": _iso(rule.created_at),
        "updated_at": _iso(rule.updated_at),
    }


def hold_body(hold: LegalHold) -> dict[str, Any]:
    return {
        "id": hold.id,
        "target_type": hold.target_type,
        "target_id": hold.target_id,
        "reason": hold.reason,
        "reference": hold.reference,
        "placed_at": _iso(hold.placed_at),
        "placed_by_id": hold.placed_by_id,
        "released_at": _iso(hold.released_at),
        "release_reason": hold.release_reason,
    }


def _choice(check: Validator, field: str, choices: tuple[str, ...], *, required: bool = True) -> str | None:
    value = check.string(field, required=required, max_length=20)
    if value is not None and value not in choices:
        check.error(field, _("Valeurs acceptées : %(values)s.", values=", ".join(choices)))
        return None
    return value


def _target(check: Validator):
    target_type = _choice(check, "target_type", TARGET_TYPES)
    target_id = check.integer("target_id", required=True)
    return target_type, target_id


@api_bp.post("/conservation")
@requires(Permission.RETENTION_MANAGE)
def create_rule() -> tuple[Response, int]:
    check = Validator(json_or_form_body())
    target_type, target_id = _target(check)
    days = check.integer("duration_days", required=True, minimum=1, maximum=366 * 200)
    mode = _choice(check, "mode", MODES)
    start = _choice(check, "from", STARTS)
    check.check()
    target = rules.get_target(current_user.organization_id, target_type, target_id)
    rule = rules.set_rule(current_actor(), target_type, target, duration_days=days, mode=mode, counted_from=start)
    db.session.commit()
    return jsonify(rule_body(rule)), 201


@api_bp.get("/conservation")
@requires(Permission.RETENTION_MANAGE)
def rule_in_force() -> Response:
    check = Validator(request.args)
    target_type, target_id = _target(check)
    check.check()
    target = rules.get_target(current_user.organization_id, target_type, target_id)
    rule, inherited = rules.rule_in_force(current_user.organization_id, target_type, target)
    expires_at = rules.file_retention(target).expires_at() if target_type == "file" and rule is not None else None
    return jsonify(
        {
            "rule": None
            if rule is None
            else {"id": rule.id, "mode": rule.mode, "duration_days": rule.duration_days, "from": rule.counted_from},
            "inherited_from": None if inherited is None else {"target_type": inherited[0], "target_id": inherited[1]},
            "expires_at": _iso(expires_at),
        }
    )


@api_bp.patch(f"/conservation/<{ID}:rule_id>")
@requires(Permission.RETENTION_MANAGE)
def change_rule(rule_id: int) -> Response:
    check = Validator(json_or_form_body())
    days = check.integer("duration_days", minimum=1, maximum=366 * 200)
    mode = _choice(check, "mode", MODES, required=False)
    reason = check.string("reason", max_length=500)
    check.check()
    if days is None and mode is None:
        raise ApiProblem(
            422, _("Rien à modifier."), errors=[{"field": "duration_days", "message": _("Ce champ est obligatoire.")}]
        )
    rule = rules.get_rule(current_user.organization_id, rule_id, lock=True)
    rules.change_rule(current_actor(), rule, duration_days=days, mode=mode, reason=reason)
    db.session.commit()
    return jsonify(rule_body(rule))


@api_bp.delete(f"/conservation/<{ID}:rule_id>")
@requires(Permission.RETENTION_MANAGE)
def delete_rule(rule_id: int) -> tuple[str, int]:
    check = Validator(request.args)
    reason = check.string("motif", max_length=500)
    check.check()
    rule = rules.get_rule(current_user.organization_id, rule_id, lock=True)
    rules.delete_rule(current_actor(), rule, reason=reason)
    db.session.commit()
    return "", 204


@api_bp.put(f"/fichiers/<{ID}:file_id>/evenement")
@requires(Permission.RETENTION_MANAGE)
def set_event(file_id: int) -> Response:
    check = Validator(json_or_form_body())
    text = check.string("date", required=True, max_length=10)
    day = None
    if text is not None:
        try:
            day = date.fromisoformat(text) if len(text) == 10 else None
        except ValueError:
            day = None
        if day is None:
            check.error("date", _("Une date AAAA-MM-JJ est attendue."))
    check.check()
    file = rules.get_target(current_user.organization_id, "file", file_id)
    row = rules.set_event_date(current_actor(), file, day)
    db.session.commit()
    return jsonify({"file_id": file.id, "date": row.event_date.isoformat()})


@api_bp.put(f"/membres/<{ID}:user_id>/contournement")
@requires(Permission.USER_MANAGE)
def set_bypass(user_id: int) -> Response:
    from portal.auth.models import User

    check = Validator(json_or_form_body())
    if not isinstance(check.data.get("granted"), bool) and check.data.get("granted") not in ("true", "false", "1", "0"):
        check.error("granted", _("Valeurs acceptées : true, false, 1, 0."))
    granted = check.boolean("granted")
    check.check()
    member = get_scoped_or_404(User, user_id)
    grants.set_bypass(current_actor(), member, granted)
    db.session.commit()
    return jsonify({"user_id": member.id, "granted": granted})


@api_bp.post("/verrouillages")
@requires(Permission.RETENTION_MANAGE)
def place_hold() -> tuple[Response, int]:
    check = Validator(json_or_form_body())
    target_type, target_id = _target(check)
    reason = check.string("reason", required=True, max_length=500)
    reference = check.string("reference", required=True, max_length=120)
    check.check()
    target = rules.get_target(current_user.organization_id, target_type, target_id)
    hold = holds.place_hold(current_actor(), target_type, target, reason=reason, reference=reference)
    db.session.commit()
    return jsonify(hold_body(hold)), 201


@api_bp.get("/verrouillages")
@requires(Permission.RETENTION_MANAGE)
def list_holds() -> Response:
    return jsonify({"items": [hold_body(hold) for hold in holds.active_holds(current_user.organization_id)]})


@api_bp.delete(f"/verrouillages/<{ID}:hold_id>")
@requires(Permission.RETENTION_MANAGE)
def lift_hold(hold_id: int) -> Response:
    check = Validator(request.args)
    reason = check.string("motif", required=True, max_length=500)
    check.check()
    hold = holds.get_hold(current_user.organization_id, hold_id, lock=True)
    holds.lift_hold(current_actor(), hold, reason=reason)
    db.session.commit()
    return jsonify(hold_body(hold))


@api_bp.get("/disposition")
@requires(Permission.RETENTION_MANAGE)
def disposition_queue() -> Response:
    items = disposition.queue(current_user.organization_id)
    return jsonify(
        {
            "items": [
                {
                    "file_id": item.file.id,
                    "name": item.file.name,
                    "expired_at": _iso(item.expired_at),
                    "rule_id": item.rule.id,
                    "mode": item.rule.mode,
                    "in_trash": item.file.deleted_at is not None,
                }
                for item in items
            ]
        }
    )


@api_bp.post(f"/disposition/<{ID}:file_id>")
@requires(Permission.RETENTION_MANAGE)
def decide(file_id: int) -> tuple[Response, int]:
    check = Validator(json_or_form_body())
    decision = _choice(check, "decision", ("destroy", "keep"))
    extend = check.integer("extend_days", required=decision == "keep", minimum=1, maximum=366 * 100)
    check.check()
    file = rules.get_target(current_user.organization_id, "file", file_id)
    actor = current_actor()
    if decision == "keep":
        kept = disposition.keep(actor, file, extend)
        db.session.commit()
        return jsonify({"decision": "keep", "keep_until": _iso(kept.keep_until)}), 201
    certificate, keys = disposition.destroy(actor, file, current_user)
    db.session.commit()
    delete_blobs(keys)
    return jsonify({"decision": "destroy", "certificate_id": certificate.id}), 201


@api_bp.get(f"/certificats/<{ID}:certificate_id>")
@requires(Permission.RETENTION_MANAGE)
def certificate_json(certificate_id: int) -> Response:
    certificate = get_scoped_or_404(DestructionCertificate, certificate_id)
    response = Response(certificate.signed_json, mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="certificat-{certificate.id}.json"'
    return response


@api_bp.get(f"/certificats/<{ID}:certificate_id>.pdf")
@requires(Permission.RETENTION_MANAGE)
def certificate_pdf(certificate_id: int) -> Response:
    certificate = get_scoped_or_404(DestructionCertificate, certificate_id)
    response = Response(certificates.render_pdf(certificate), mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="certificat-{certificate.id}.pdf"'
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response
