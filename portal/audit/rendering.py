"""One human sentence per journal entry, in the interface language.

Labels come from users (file names, e-mail addresses): everything is escaped, and
control characters are shown as visible escapes so that a label with CR/LF or ANSI
codes cannot forge a second line in the journal or an exported log.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from flask_babel import format_datetime, get_locale
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape

from portal.audit.models import AuditEntry
from portal.security.text import visible

SENTENCES: dict[str, Any] = {
    "armoire.created": _l("%(user)s a créé l'armoire %(target)s"),
    "armoire.renamed": _l("%(user)s a renommé l'armoire %(target)s"),
    "armoire.deleted": _l("%(user)s a supprimé l'armoire %(target)s"),
    "folder.created": _l("%(user)s a créé le dossier %(target)s"),
    "folder.renamed": _l("%(user)s a renommé le dossier %(target)s"),
    "folder.moved": _l("%(user)s a déplacé le dossier %(target)s"),
    "folder.deleted": _l("%(user)s a supprimé le dossier %(target)s"),
    "file.added": _l("%(user)s a ajouté le fichier %(target)s"),
    "file.modified": _l("%(user)s a modifié le fichier %(target)s"),
    "file.renamed": _l("%(user)s a renommé le fichier %(target)s"),
    "file.moved": _l("%(user)s a déplacé le fichier %(target)s"),
    "file.deleted": _l("%(user)s a supprimé le fichier %(target)s"),  # the specification's own example
    "file.restored": _l("%(user)s a restauré le fichier %(target)s"),
    "file.purged": _l("%(user)s a détruit définitivement le fichier %(target)s"),
    "file.downloaded": _l("%(user)s a téléchargé le fichier %(target)s"),
    "file.viewed": _l("%(user)s a consulté le fichier %(target)s"),
    "file.integrity_failed": _l("Le contrôle d'intégrité du fichier %(target)s a échoué"),
    "version.created": _l("%(user)s a créé une nouvelle version de %(target)s"),
    "version.restored": _l("%(user)s a restauré une version de %(target)s"),
    "organization.created": _l("%(user)s a créé l'organisation %(target)s"),
    "organization.settings_changed": _l("%(user)s a modifié les paramètres de l'organisation"),
    "user.registered": _l("%(user)s a inscrit l'utilisateur %(target)s"),
    "user.login": _l("Connexion de %(user)s"),
    "user.login_failed": _l("Échec de connexion pour %(target)s"),
    "user.logout": _l("Déconnexion de %(user)s"),
    "user.locked_out": _l("Le compte %(target)s a été verrouillé après trop d'échecs"),
    "user.email_confirmed": _l("%(user)s a confirmé son adresse e-mail"),
    "user.2fa_enabled": _l("%(user)s a activé la double authentification"),
    "user.2fa_disabled": _l("%(user)s a désactivé la double authentification"),
    "user.2fa_failed": _l("%(user)s a saisi un code de double authentification erroné"),
    "user.recovery_code_used": _l("%(user)s a utilisé un code de secours"),
    "user.recovery_codes_regenerated": _l("%(user)s a régénéré ses codes de secours"),
    "user.password_changed": _l("%(user)s a changé son mot de passe"),
    "user.password_reset_requested": _l("Réinitialisation du mot de passe demandée pour %(target)s"),
    "user.password_reset": _l("%(user)s a réinitialisé son mot de passe"),
    "user.invited": _l("%(user)s a invité %(target)s"),
    "user.invitation_accepted": _l("%(user)s a accepté son invitation"),
    "user.role_changed": _l("%(user)s a changé le rôle de %(target)s"),
    "user.deactivated": _l("%(user)s a désactivé le compte %(target)s"),
    "user.reactivated": _l("%(user)s a réactivé le compte %(target)s"),
    "user.sessions_revoked": _l("%(user)s a fermé les sessions de %(target)s"),
    "user.invitation_revoked": _l("%(user)s a révoqué l'invitation de %(target)s"),
    "user.data_exported": _l("%(user)s a exporté les données personnelles de %(target)s"),
    "user.pseudonymised": _l("%(user)s a pseudonymisé un ancien membre, désormais %(target)s"),
    "sso.login": _l("Connexion de %(user)s par SSO"),
    "sso.login_failed": _l("Connexion SSO refusée pour %(target)s"),
    "sso.link_requested": _l("Liaison d'une identité SSO demandée pour %(target)s"),
    "sso.linked": _l("%(user)s a lié une identité SSO"),
    "sso.unlinked": _l("%(user)s a délié une identité SSO"),
    "sso.member_created": _l("%(target)s créé à sa première connexion SSO"),
    "sso.policy_changed": _l("%(user)s a modifié la politique SSO"),
    "token.created": _l("%(user)s a créé le jeton d'accès %(target)s"),
    "token.revoked": _l("%(user)s a révoqué le jeton d'accès %(target)s"),
    "security.forbidden": _l("%(user)s a tenté une action non autorisée"),
    "security.not_found": _l("%(user)s a demandé un élément introuvable"),
    "journal.exported": _l("%(user)s a exporté le journal"),
    "journal.verified": _l("%(user)s a vérifié l'intégrité du journal"),
    "journal.checkpoint_refused": _l("%(user)s a refusé un point de contrôle : le journal ne se vérifie plus"),
    "backup.created": _l("%(user)s a créé la sauvegarde %(target)s"),
    "backup.restored": _l("%(user)s a restauré la sauvegarde %(target)s"),
    "backup.verified": _l("Vérification de la sauvegarde %(target)s"),
    "backup.failed": _l("Échec de la sauvegarde %(target)s"),
    "backup.pruned": _l("%(user)s : sauvegardes anciennes supprimées selon la durée de conservation"),
    "file.restored_from_backup": _l("%(user)s a restauré %(target)s depuis une sauvegarde"),
    "keys.rotated": _l("%(user)s a renouvelé les clés de chiffrement"),
    "keys.retired": _l("%(user)s a retiré une clé de chiffrement %(target)s"),
    "keys.ledger_applied": _l("%(user)s a appliqué le registre des destructions de clés"),
    "subscription.changed": _l("%(user)s a modifié l'abonnement (formule %(target)s)"),
    "subscription.reminder_sent": _l("Rappel d'échéance de l'abonnement envoyé aux administrateurs (%(target)s)"),
    "subscription.downgrade_postponed": _l(
        "Passage à la formule %(target)s reporté : l'utilisation dépasse ses limites (administrateurs prévenus)"
    ),
    "plan.created": _l("%(user)s a créé la formule %(target)s"),
    "plan.changed": _l("%(user)s a modifié la formule %(target)s"),
    "plan.deleted": _l("%(user)s a supprimé la formule %(target)s"),
    "payment.started": _l("%(user)s a lancé un paiement (formule %(target)s)"),
    "payment.succeeded": _l("Paiement %(target)s réussi"),
    "payment.failed": _l("Échec du paiement %(target)s"),
    "payment.anomaly": _l("Anomalie de paiement : %(target)s"),
    "invoice.issued": _l("Facture %(target)s émise"),
    "credit_note.issued": _l("Avoir %(target)s émis"),
    "retention.changed": _l("%(user)s a modifié la durée de conservation de %(target)s"),
    "legal_hold.set": _l("%(user)s a placé %(target)s sous conservation légale"),
    "legal_hold.released": _l("%(user)s a levé la conservation légale de %(target)s"),
    "file.deletion_refused": _l("Suppression de %(target)s refusée (conservation ou verrouillage)"),
    "file.event_date_set": _l("%(user)s a fixé la date d'événement de %(target)s"),
    "retention.bypassed": _l("%(user)s a contourné la conservation de %(target)s"),
    "user.retention_bypass_changed": _l("%(user)s a modifié le droit de contourner la conservation de %(target)s"),
    "disposition.kept": _l("%(user)s a prolongé la conservation de %(target)s"),
    "disposition.destroyed": _l("%(user)s a détruit %(target)s au terme de sa conservation"),
    "certificate.verified": _l("Certificat de destruction %(target)s vérifié"),
    "compliance.report_exported": _l("%(user)s a exporté le rapport de conformité"),
}
_FALLBACK = _l("%(user)s : action %(action)s sur %(target)s")

ACTION_LABELS: dict[str, Any] = {
    "armoire.created": _l("Armoire créée"),
    "armoire.renamed": _l("Armoire renommée"),
    "armoire.deleted": _l("Armoire supprimée"),
    "folder.created": _l("Dossier créé"),
    "folder.renamed": _l("Dossier renommé"),
    "folder.moved": _l("Dossier déplacé"),
    "folder.deleted": _l("Dossier supprimé"),
    "file.added": _l("Fichier ajouté"),
    "file.modified": _l("Fichier modifié"),
    "file.renamed": _l("Fichier renommé"),
    "file.moved": _l("Fichier déplacé"),
    "file.deleted": _l("Fichier supprimé"),
    "file.restored": _l("Fichier restauré"),
    "file.purged": _l("Fichier détruit"),
    "file.downloaded": _l("Fichier téléchargé"),
    "file.viewed": _l("Fichier consulté"),
    "file.integrity_failed": _l("Échec du contrôle d'intégrité"),
    "version.created": _l("Version créée"),
    "version.restored": _l("Version restaurée"),
    "organization.created": _l("Organisation créée"),
    "organization.settings_changed": _l("Paramètres modifiés"),
    "user.registered": _l("Utilisateur inscrit"),
    "user.login": _l("Connexion"),
    "user.login_failed": _l("Échec de connexion"),
    "user.logout": _l("Déconnexion"),
    "user.locked_out": _l("Compte verrouillé"),
    "user.role_changed": _l("Rôle modifié"),
    "user.invited": _l("Invitation envoyée"),
    "user.deactivated": _l("Compte désactivé"),
    "user.reactivated": _l("Compte réactivé"),
    "user.password_changed": _l("Mot de passe changé"),
    "user.password_reset": _l("Mot de passe réinitialisé"),
    "user.2fa_enabled": _l("Double authentification activée"),
    "user.2fa_disabled": _l("Double authentification désactivée"),
    "sso.login": _l("Connexion SSO"),
    "sso.login_failed": _l("Connexion SSO refusée"),
    "sso.link_requested": _l("Liaison SSO demandée"),
    "sso.linked": _l("Identité SSO liée"),
    "sso.unlinked": _l("Identité SSO déliée"),
    "sso.member_created": _l("Membre créé par SSO"),
    "sso.policy_changed": _l("Politique SSO modifiée"),
    "token.created": _l("Jeton créé"),
    "token.revoked": _l("Jeton révoqué"),
    "security.forbidden": _l("Accès refusé"),
    "journal.exported": _l("Journal exporté"),
    "journal.verified": _l("Journal vérifié"),
    "journal.checkpoint_refused": _l("Point de contrôle refusé"),
    "backup.created": _l("Sauvegarde créée"),
    "backup.restored": _l("Sauvegarde restaurée"),
    "subscription.changed": _l("Abonnement modifié"),
    "subscription.reminder_sent": _l("Rappel d'abonnement envoyé"),
    "subscription.downgrade_postponed": _l("Changement de formule reporté"),
    "plan.created": _l("Formule créée"),
    "plan.changed": _l("Formule modifiée"),
    "plan.deleted": _l("Formule supprimée"),
    "payment.started": _l("Paiement lancé"),
    "backup.verified": _l("Sauvegarde vérifiée"),
    "backup.failed": _l("Échec de sauvegarde"),
    "backup.pruned": _l("Sauvegardes élaguées"),
    "file.restored_from_backup": _l("Fichier restauré depuis une sauvegarde"),
    "payment.succeeded": _l("Paiement réussi"),
    "payment.failed": _l("Échec de paiement"),
    "payment.anomaly": _l("Anomalie de paiement"),
    "invoice.issued": _l("Facture émise"),
    "credit_note.issued": _l("Avoir émis"),
    "user.email_confirmed": _l("Adresse e-mail confirmée"),
    "user.2fa_failed": _l("Code de double authentification erroné"),
    "user.recovery_code_used": _l("Code de secours utilisé"),
    "user.recovery_codes_regenerated": _l("Codes de secours régénérés"),
    "user.password_reset_requested": _l("Réinitialisation demandée"),
    "user.invitation_accepted": _l("Invitation acceptée"),
    "user.sessions_revoked": _l("Sessions fermées"),
    "user.invitation_revoked": _l("Invitation révoquée"),
    "user.data_exported": _l("Données personnelles exportées"),
    "user.pseudonymised": _l("Membre pseudonymisé"),
    "security.not_found": _l("Accès à un objet d'une autre organisation"),
    "keys.rotated": _l("Clés de chiffrement renouvelées"),
    "keys.retired": _l("Clé de chiffrement retirée"),
    "keys.ledger_applied": _l("Registre des destructions appliqué"),
    "retention.changed": _l("Durée de conservation modifiée"),
    "legal_hold.set": _l("Conservation légale posée"),
    "legal_hold.released": _l("Conservation légale levée"),
    "file.deletion_refused": _l("Suppression refusée"),
    "file.event_date_set": _l("Date d'événement fixée"),
    "retention.bypassed": _l("Conservation contournée"),
    "user.retention_bypass_changed": _l("Droit de contournement modifié"),
    "disposition.kept": _l("Conservation prolongée"),
    "disposition.destroyed": _l("Fichier détruit au terme de sa conservation"),
    "certificate.verified": _l("Certificat vérifié"),
    "compliance.report_exported": _l("Rapport de conformité exporté"),
}


# Sentences that say more when the entry's details allow (older entries fall back).
ROLE_CHANGE = _l("%(user)s a changé le rôle de %(target)s en %(role)s")
FORBIDDEN_DETAILED = _l("%(user)s a tenté une action non autorisée : %(what)s")

ROLE_NAMES: dict[str, Any] = {
    "lecteur": _l("lecteur"),
    "contributeur": _l("contributeur"),
    "admin": _l("administrateur"),
}

# What a refused permission would have allowed, for "a tenté une action non autorisée : …".
PERMISSION_LABELS: dict[str, Any] = {
    "account": _l("gérer son compte"),
    "document.read": _l("consulter les documents"),
    "document.download": _l("télécharger un document"),
    "document.write": _l("ajouter ou modifier un document"),
    "document.trash": _l("mettre un document à la corbeille"),
    "document.purge": _l("détruire un document"),
    "armoire.manage": _l("gérer les armoires"),
    "user.manage": _l("gérer les membres"),
    "audit.read": _l("lire le journal"),
    "backup.manage": _l("gérer les sauvegardes"),
    "billing.manage": _l("gérer l'abonnement"),
    "retention.manage": _l("gérer la conservation"),
    "organization.manage": _l("modifier les paramètres de l'organisation"),
    "platform.admin": _l("administrer la plateforme"),
}

TARGET_TYPE_LABELS: dict[str, Any] = {
    "armoire": _l("Armoire"),
    "folder": _l("Dossier"),
    "file": _l("Fichier"),
    "version": _l("Version"),
    "user": _l("Membre"),
    "organization": _l("Organisation"),
    "api_token": _l("Jeton d'accès"),
    "backup": _l("Sauvegarde"),
    "payment": _l("Paiement"),
    "subscription": _l("Abonnement"),
    "invoice": _l("Facture"),
    "master_key": _l("Clé de chiffrement"),
}


def target_type_label(kind: str) -> str:
    label = TARGET_TYPE_LABELS.get(kind)
    return str(label) if label is not None else kind


def action_label(action: str) -> str:
    label = ACTION_LABELS.get(action)
    return str(label) if label is not None else action


def _unknown_member() -> Markup:
    return Markup('<span class="journal-system">{}</span>').format(_l("un membre inconnu"))


def target_markup(entry: AuditEntry, names: dict[int, str] | None = None) -> Markup:
    """The target as a reader names it: a member by their name, anything else by its label.

    Never a bare database id: a member is shown under their current name (the pseudonym
    once pseudonymised), a labelled object in quotes, and an unlabelled one by number.
    """
    names = names or {}
    if entry.target_type == "user" and entry.target_id is not None:
        name = names.get(entry.target_id)
        if name:
            return escape(visible(name))
        if entry.target_label:
            return escape(visible(entry.target_label))
        return _unknown_member()
    if entry.target_label:
        return Markup("“{}”").format(visible(entry.target_label))
    if entry.target_id is not None:
        return Markup("n° {}").format(entry.target_id)
    return Markup("—")


def user_markup(entry: AuditEntry, names: dict[int, str], link: Callable[[int], str] | None) -> Markup:
    if entry.user_id is None:
        return Markup('<span class="journal-system">{}</span>').format(_l("Système"))
    name = names.get(entry.user_id)
    if not name:
        return _unknown_member()
    if link is not None:
        return Markup('<a href="{}">{}</a>').format(link(entry.user_id), visible(name))
    return escape(visible(name))


# French elides "de" before a vowel or a mute h: "Connexion d'Aminata Sow", "le rôle d'Ibrahim".
# An aspirated h ("de Hugo" is also heard) cannot be told from the spelling: h elides, as
# in most first names (Hélène, Habib).
_ELIDABLE = re.compile(r"^[aeiouyhàâäéèêëîïôöùûüÿæœ]", re.IGNORECASE)
_DE_BEFORE = re.compile(r"\bde %\((user|target)\)s")


def _elide(template: str, values: dict[str, Markup]) -> str:
    def replace(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        text = re.sub(r"<[^>]*>", "", str(value))  # the visible text of a link
        return "d'" + match.group(0)[3:] if _ELIDABLE.match(text) else match.group(0)

    return _DE_BEFORE.sub(replace, template)


def _template_for(entry: AuditEntry, values: dict[str, Any]) -> Any:
    details = entry.details if isinstance(entry.details, dict) else {}
    if entry.action == "user.role_changed":
        role = ROLE_NAMES.get(str(details.get("to", details.get("new", ""))))
        if role is not None:
            values["role"] = role
            return ROLE_CHANGE
    if entry.action == "security.forbidden":
        what = PERMISSION_LABELS.get(str(details.get("permission", "")))
        if what is not None:
            path = details.get("path")
            values["what"] = Markup("{} ({})").format(what, visible(path)) if path else what
            return FORBIDDEN_DETAILED
    return SENTENCES.get(entry.action, _FALLBACK)


def sentence(entry: AuditEntry, names: dict[int, str], link: Callable[[int], str] | None = None) -> Markup:
    """The entry as one escaped sentence, the actor's name linked when ``link`` is given."""
    values: dict[str, Any] = {
        "user": user_markup(entry, names, link),
        "target": target_markup(entry, names),
        "action": entry.action,
    }
    template = str(_template_for(entry, values))
    if str(get_locale() or "fr").startswith("fr"):
        template = _elide(template, values)
    # The template itself is escaped too (a translation is text, never markup); the values
    # are escaped by Markup's % operator unless already Markup (the user link).
    return escape(template) % values


def timestamp(entry: AuditEntry) -> str:
    return format_datetime(entry.created_at, "short")


def user_names(entries: Iterable[AuditEntry], organization_id: int) -> dict[int, str]:
    """Current names of the entries' actors and of the members they act on."""
    from sqlalchemy import select

    from portal.auth.models import User
    from portal.extensions import db

    ids = {entry.user_id for entry in entries if entry.user_id is not None}
    ids.update(entry.target_id for entry in entries if entry.target_type == "user" and entry.target_id is not None)
    if not ids:
        return {}
    rows = db.session.execute(
        select(User.id, User.name).where(User.organization_id == organization_id, User.id.in_(ids))
    ).all()
    return {row.id: row.name for row in rows}
