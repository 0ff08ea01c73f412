"""Feedback on account pages: recovery-code controls, token copy, readable sessions, plain errors."""

from __future__ import annotations

import re
from urllib.parse import unquote

from portal.auth.models import UserSession
from portal.extensions import db
from tests.auth.support import csrf_of, enable_totp, text, totp_now
from tests.conftest import csrf

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
)


def test_recovery_codes_come_with_copy_download_and_print(login_as, make_user, clock):
    user = make_user("lecteur")
    member = login_as(user)
    secret, _old = enable_totp(member, clock)
    clock.advance(seconds=30)
    token = csrf_of(member, "/me")
    done = member.post("/me/2fa/recovery-codes", data={"csrf_token": token, "reauth_code": totp_now(secret, clock)})
    html = text(done)
    codes = re.findall(r"<code>([A-Z0-9]{5}-[A-Z0-9]{5})</code>", html)
    assert len(codes) == 10
    assert 'data-copy-target="recovery-code-list"' in html and "data-print" in html
    href = re.search(r'download="coffre-codes-de-secours.txt"\s+href="data:text/plain;charset=utf-8,([^"]+)"', html)
    assert href is not None
    assert unquote(href.group(1).replace("&amp;", "&")).split("\r\n")[1:11] == codes


def test_new_token_has_a_copy_button(contributor_client):
    token = csrf(contributor_client, "/me/jetons")
    created = contributor_client.post("/me/jetons", data={"csrf_token": token, "name": "Scanner", "days": "7"})
    assert 'data-copy-target="new-token"' in created.get_data(as_text=True)


def test_sessions_show_a_readable_device_and_local_times(login_as, make_user):
    user = make_user("lecteur")
    member = login_as(user)
    row = db.session.execute(db.select(UserSession).where(UserSession.user_id == user.id)).scalar_one()
    row.user_agent = CHROME_WINDOWS
    db.session.commit()
    html = member.get("/me").get_data(as_text=True)
    assert "Chrome sur Windows" in html
    assert re.search(r'<time datetime="[0-9T:+.-]+" data-local>', html)


def test_error_fragments_speak_plainly(admin_client):
    response = admin_client.get("/armoires/999999", headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "404 ·" not in body and "<strong>Introuvable</strong>" in body


def test_size_units_follow_the_language(app):
    from flask_babel import force_locale

    from portal.documents.routes import filesize

    with app.test_request_context():
        with force_locale("fr"):
            assert filesize(1536) == "1,5 Kio"
            assert filesize(12).endswith(" o")
        with force_locale("en"):
            assert filesize(1536) == "1.5 KiB" and filesize(12) == "12 B"
