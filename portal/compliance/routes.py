"""Compliance pages: the organisation's report, hold and rule forms, disposition review, certificates."""

from __future__ import annotations

from flask import Response, flash, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal.compliance import bp, certificates, disposition, grants, holds, reports, rules
from portal.compliance.forms import BypassForm, DecisionForm, HoldForm, LiftForm, RuleForm
from portal.compliance.models import DestructionCertificate
from portal.database import writes_on_get
from portal.documents.errors import DocumentError
from portal.extensions import db
from portal.security.permissions import Permission, requires
from portal.security.tenancy import get_scoped_or_404
from portal.storage.blobs import delete_blobs
from portal.web.context import current_actor
from portal.web.errors import render_error
from portal.web.htmx import redirect_or_hx, render_page_or_fragment


@bp.errorhandler(DocumentError)
def _error(error: DocumentError) -> Response:
    from portal.compliance.policy import journal_document_error

    journal_document_error(error)
    return render_error(error.status, error.message)


def target_url(target_type: str, target) -> str:
    if target_type == "armoire":
        return url_for("documents.armoire", armoire_id=target.id)
    if target_type == "folder":
        return url_for("documents.folder", armoire_id=target.armoire_id, folder_id=target.id)
    return url_for("documents.file", file_id=target.id)


def panel_context(target_type: str, target) -> dict:
    """What ``compliance/_panel.html`` shows on an armoire, folder or file page."""
    organization_id = target.organization_id
    rule, inherited = rules.rule_in_force(organization_id, target_type, target)
    expires_at = rules.file_retention(target).expires_at() if target_type == "file" and rule is not None else None
    chain = rules.lineage(target_type, target)
    return {
        "target_type": target_type,
        "target": target,
        "rule": rule,
        "inherited": inherited,
        "expires_at": expires_at,
        "holds": holds.active_holds(organization_id, chain),
        "hold_form": HoldForm(target_type=target_type, target_id=target.id, formdata=None),
        "lift_form": LiftForm(formdata=None),
        "rule_form": RuleForm(target_type=target_type, target_id=target.id, formdata=None),
    }


def _form_target(form) -> tuple[str, object]:
    target_id = int(form.target_id.data) if str(form.target_id.data).isdigit() else 0
    return form.target_type.data, rules.get_target(current_user.organization_id, form.target_type.data, target_id)


def _invalid(form) -> Response:
    messages = [
        f"{getattr(form, name).label.text} : {errors[0]}"
        for name, errors in form.errors.items()
        if hasattr(getattr(form, name), "label")
    ]
    return render_error(422, " ; ".join(messages) or _("Le formulaire n'est pas valide."))


@bp.route("/")
@requires(Permission.RETENTION_MANAGE)
def index():
    report = reports.build(current_user.organization_id)
    return render_page_or_fragment(
        "compliance/index.html", "compliance/_report.html", report=report, decision_form=DecisionForm(formdata=None)
    )


def _journal_export(kind: str) -> None:
    from portal.audit.services import record

    record("compliance.report_exported", current_actor(), target_type="organization", details={"format": kind})
    db.session.commit()


@bp.route("/rapport.csv")
@requires(Permission.RETENTION_MANAGE)
@writes_on_get
def report_csv():
    body = reports.to_csv(reports.build(current_user.organization_id))
    _journal_export("csv")
    response = Response(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="rapport-conformite.csv"'
    return response


@bp.route("/rapport.pdf")
@requires(Permission.RETENTION_MANAGE)
@writes_on_get
def report_pdf():
    from portal.organizations.models import Organization

    organization = db.session.get(Organization, current_user.organization_id)
    body = reports.to_pdf(reports.build(current_user.organization_id), organization.name if organization else "")
    _journal_export("pdf")
    response = Response(body, mimetype="application/pdf")
    response.headers["Content-Disposition"] = 'attachment; filename="rapport-conformite.pdf"'
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@bp.route("/verrouillages", methods=["POST"])
@requires(Permission.RETENTION_MANAGE)
def place_hold():
    form = HoldForm()
    if not form.validate_on_submit():
        return _invalid(form)
    target_type, target = _form_target(form)
    holds.place_hold(current_actor(), target_type, target, reason=form.reason.data, reference=form.reference.data)
    db.session.commit()
    flash(_("Verrouillage légal posé sur « %(name)s ».", name=target.name), "success")
    return redirect_or_hx(target_url(target_type, target))


@bp.route("/verrouillages/<int:hold_id>/lever", methods=["POST"])
@requires(Permission.RETENTION_MANAGE)
def lift_hold(hold_id: int):
    form = LiftForm()
    if not form.validate_on_submit():
        return _invalid(form)
    hold = holds.get_hold(current_user.organization_id, hold_id, lock=True)
    holds.lift_hold(current_actor(), hold, reason=form.reason.data)
    target = rules.get_target(current_user.organization_id, hold.target_type, hold.target_id)
    db.session.commit()
    flash(_("Verrouillage %(reference)s levé.", reference=hold.reference), "success")
    return redirect_or_hx(target_url(hold.target_type, target))


@bp.route("/regles", methods=["POST"])
@requires(Permission.RETENTION_MANAGE)
def set_rule():
    form = RuleForm()
    if not form.validate_on_submit():
        return _invalid(form)
    target_type, target = _form_target(form)
    existing = rules.rule_on(current_user.organization_id, target_type, target.id, lock=True)
    if existing is None:
        rules.set_rule(
            current_actor(),
            target_type,
            target,
            duration_days=form.duration_days.data,
            mode=form.mode.data,
            counted_from=form.counted_from.data,
        )
    else:
        # The form only lengthens or strengthens: a shorter value is a 409 from the service.
        rules.change_rule(current_actor(), existing, duration_days=form.duration_days.data, mode=form.mode.data)
    db.session.commit()
    flash(_("Règle de conservation enregistrée."), "success")
    return redirect_or_hx(target_url(target_type, target))


@bp.route("/disposition/<int:file_id>", methods=["POST"])
@requires(Permission.RETENTION_MANAGE)
def decide(file_id: int):
    form = DecisionForm()
    if not form.validate_on_submit() or (form.decision.data == "keep" and not form.extend_days.data):
        return render_error(422, _("Choisissez une décision (et une durée pour conserver plus longtemps)."))
    file = rules.get_target(current_user.organization_id, "file", file_id)
    if form.decision.data == "keep":
        disposition.keep(current_actor(), file, form.extend_days.data)
        db.session.commit()
        flash(_("« %(name)s » est conservé plus longtemps.", name=file.name), "success")
    else:
        certificate, keys = disposition.destroy(current_actor(), file, current_user)
        db.session.commit()
        delete_blobs(keys)
        flash(_("« %(name)s » a été détruit ; certificat n° %(id)s.", name=file.name, id=certificate.id), "success")
    return redirect_or_hx(url_for("compliance.index"))


@bp.route("/certificats/<int:certificate_id>.json")
@requires(Permission.RETENTION_MANAGE)
def certificate_json(certificate_id: int):
    certificate = get_scoped_or_404(DestructionCertificate, certificate_id)
    response = Response(certificate.signed_json, mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="certificat-{certificate.id}.json"'
    return response


@bp.route("/certificats/<int:certificate_id>.pdf")
@requires(Permission.RETENTION_MANAGE)
def certificate_pdf(certificate_id: int):
    certificate = get_scoped_or_404(DestructionCertificate, certificate_id)
    response = Response(certificates.render_pdf(certificate), mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="certificat-{certificate.id}.pdf"'
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@bp.route("/membres/<int:user_id>/contournement", methods=["POST"])
@requires(Permission.USER_MANAGE)
def set_bypass(user_id: int):
    from portal.auth.models import User

    form = BypassForm()
    if not form.validate_on_submit():
        return render_error(422, _("Le formulaire n'est pas valide."))
    member = get_scoped_or_404(User, user_id)
    granted = grants.set_bypass(current_actor(), member, form.granted.data == "1")
    db.session.commit()
    flash(
        _("« %(name)s » peut contourner la conservation.", name=member.name)
        if granted
        else _("« %(name)s » ne peut plus contourner la conservation.", name=member.name),
        "success",
    )
    return redirect_or_hx(url_for("users.index"))


@bp.app_template_global("compliance_panel")
def compliance_panel(target_type: str, target) -> dict:
    """Called by the armoire, folder and file pages (admins only) to fill ``_panel.html``."""
    return panel_context(target_type, target)


@bp.app_template_global("retention_bypass")
def retention_bypass(member) -> bool:
    return grants.has_bypass(member.organization_id, member.id)


@bp.app_template_global("bypass_form")
def bypass_form() -> BypassForm:
    return BypassForm(formdata=None)
