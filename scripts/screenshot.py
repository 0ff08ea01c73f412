"""Regenerate docs/screenshot.png: the demo organisation's first armoire, signed in as its admin.

Usage: COFFRE_INSTANCE_DIR=$(mktemp -d) .venv/bin/python scripts/screenshot.py
(a throwaway instance: migrations, demo data, a server on 127.0.0.1, Debian's Chromium).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
PORT = int(os.environ.get("COFFRE_SCREENSHOT_PORT", "5077"))


def main() -> None:
    instance = Path(os.environ["COFFRE_INSTANCE_DIR"])
    env = {**os.environ, "FLASK_APP": "wsgi", "COFFRE_SCHEDULER": "false"}
    flask = [sys.executable, "-m", "flask"]
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([*flask, "demo-data"], cwd=ROOT, env=env, check=True, capture_output=True)
    password = (instance / "demo_password").read_text().strip()
    server = subprocess.Popen([*flask, "run", "--port", str(PORT)], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{PORT}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 1150}, locale="fr-FR")
            page.goto(base + "/auth/login")
            page.get_by_label("Adresse e-mail").fill("awa.diallo@demo.coffre.test")
            page.get_by_label("Mot de passe").fill(password)
            page.get_by_role("button", name="Se connecter").click()
            page.wait_for_load_state("networkidle")
            page.goto(base + "/armoires")
            page.get_by_role("link", name="Ressources humaines").first.click()
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(ROOT / "docs" / "screenshot.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
