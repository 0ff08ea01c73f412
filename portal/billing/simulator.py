"""A local FeexPay simulator: a real HTTP server on loopback speaking the protocol notes.

FeexPay has no sandbox, so tests and ``serve.sh``'s demo mode pay against this.
Outcomes are picked from the phone number's last digits (``…0000`` FAILED
PAYER_NOT_FOUND, ``…1111`` FAILED LOW_BALANCE, ``…9999`` PENDING forever, anything
else SUCCESSFUL after ``settle_after`` seconds) or set through the control endpoints:

- ``POST /_control/transactions/<ref>`` ``{"status": …, "amount": …}``: set the answer;
- ``POST /_control/mode`` ``{"mode": "normal"|"down"|"slow"|"garbage", "delay": s}``;
- ``POST /_control/notify/<ref>`` ``{"status": …, "amount": …}``: POST a notification
  (possibly forged: it need not agree with the status endpoint) to the notify URL.

Run it: ``python -m portal.billing.simulator --port 8765 --notify-url http://127.0.0.1:5000/abonnement/feexpay/notification``.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx

from portal.billing.feexpay import NETWORKS

SHOP_ID = "coffre-demo-shop"
API_KEY = "fp_" + "0" * 64
ALL_NETWORKS = {network for networks in NETWORKS.values() for network in networks}
LEGACY_LABELS = {network.upper().replace("_", " "): network for network in ALL_NETWORKS}


@dataclass
class Transaction:
    reference: str
    amount: int
    phone: str
    network: str
    callback_info: Any
    outcome: str  # SUCCESSFUL | FAILED | PENDING
    reason: str | None = None
    created: float = field(default_factory=time.monotonic)
    forced_status: str | None = None
    forced_amount: int | None = None
    callback_url: str | None = None
    notified: bool = False


class Simulator:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        settle_after: float = 1.0,
        notify_url: str | None = None,
        shop: str = SHOP_ID,
    ) -> None:
        self.settle_after = settle_after
        self.notify_url = notify_url
        self.shop = shop
        self.mode = "normal"
        self.delay = 0.0
        self.transactions: dict[str, Transaction] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Simulator:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        threading.Thread(target=self._notifier, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------ state
    def create(self, amount: int, phone: str, network: str, callback_info: Any) -> Transaction:
        if phone.endswith("0000"):
            outcome, reason = "FAILED", "PAYER_NOT_FOUND"
        elif phone.endswith("1111"):
            outcome, reason = "FAILED", "LOW_BALANCE_OR_PAYEE_LIMIT_REACHED_OR_NOT_ALLOWED"
        elif phone.endswith("9999"):
            outcome, reason = "PENDING", None
        else:
            outcome, reason = "SUCCESSFUL", None
        transaction = Transaction(str(uuid.uuid4()), amount, phone, network, callback_info, outcome, reason)
        with self.lock:
            self.transactions[transaction.reference] = transaction
        return transaction

    def current_status(self, transaction: Transaction) -> str:
        if transaction.forced_status:
            return transaction.forced_status
        if transaction.outcome != "PENDING" and time.monotonic() - transaction.created >= self.settle_after:
            return transaction.outcome
        return "PENDING"

    def set_status(self, reference: str, status: str, amount: int | None = None) -> None:
        with self.lock:
            transaction = self.transactions[reference]
            transaction.forced_status = status
            transaction.forced_amount = amount

    def status_body(self, transaction: Transaction) -> dict[str, Any]:
        status = self.current_status(transaction)
        return {
            "reference": transaction.reference,
            "amount": transaction.forced_amount if transaction.forced_amount is not None else transaction.amount,
            "status": status,
            "reason": transaction.reason if status == "FAILED" else None,
            "phoneNumber": transaction.phone,
        }

    def notification_body(self, transaction: Transaction, status: str | None = None, amount: int | None = None) -> dict:
        return {
            "reference": transaction.reference,
            "order_id": transaction.reference[:8],
            "status": status or self.current_status(transaction),
            "amount": amount if amount is not None else transaction.amount,
            "callback_info": transaction.callback_info,
            "phoneNumber": transaction.phone,
            "reseau": transaction.network.upper().replace("_", " "),
            "type": "MOBILE" if transaction.network != "card" else "CARD",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def notify(self, reference: str, status: str | None = None, amount: int | None = None) -> int | None:
        transaction = self.transactions[reference]
        if not self.notify_url:
            return None
        try:
            return httpx.post(
                self.notify_url, json=self.notification_body(transaction, status, amount), timeout=10
            ).status_code
        except httpx.HTTPError:
            return None

    def _notifier(self) -> None:
        """Deliver a notification once each transaction settles, as the merchant webhook would."""
        while not self._stop.wait(0.3):
            if not self.notify_url:
                continue
            with self.lock:
                due = [t for t in self.transactions.values() if not t.notified and self.current_status(t) != "PENDING"]
                for transaction in due:
                    transaction.notified = True
            for transaction in due:
                self.notify(transaction.reference)


def _handler_for(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if "json" in (self.headers.get("Content-Type") or ""):
                try:
                    data = json.loads(raw or b"{}")
                    return data if isinstance(data, dict) else {}
                except ValueError:
                    return {}
            return {key: values[0] for key, values in parse_qs(raw.decode(errors="replace")).items()}

        def _authorised(self, body: dict[str, Any], legacy: bool = False) -> bool:
            header = self.headers.get("Authorization", "")
            key = header[7:] if header.startswith("Bearer ") else str(body.get("token") or "")
            if not key.startswith("fp_"):
                self._send(401, {"message": "Unauthorized"})
                return False
            return True

        def _faulty(self) -> bool:
            """Apply the control mode; True when the answer was already sent."""
            if sim.mode == "slow":
                time.sleep(sim.delay)
            if sim.mode == "down":
                self._send(503, {"message": "NETWORK_UNAVAILABLE"})
                return True
            if sim.mode == "garbage":
                self._send(200, b"<html>Bad Gateway</html>", "text/html")
                return True
            return False

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            sim.requests.append(("GET", path))
            if match := re.fullmatch(r"/api/shop/([^/]+)/get_shop", path):
                if match.group(1) != sim.shop:
                    return self._send(404, {"message": "Shop not found"})
                return self._send(200, {"name": "Coffre (simulateur)", "systemCardPay": True})
            if match := re.fullmatch(
                r"/api/transactions/(?:public/single/status|getrequesttopay/integration)/([^/]+)", path
            ):
                if "public" in path and not self._authorised({}):
                    return None
                if self._faulty():
                    return None
                transaction = sim.transactions.get(match.group(1))
                if transaction is None:
                    return self._send(404, {"message": "Transaction not found"})
                return self._send(200, sim.status_body(transaction))
            if match := re.fullmatch(r"/pay/card/([^/]+)", path):
                transaction = sim.transactions.get(match.group(1))
                if transaction is None:
                    return self._send(404, {"message": "Transaction not found"})
                page = (
                    "<!doctype html><title>FeexPay (simulateur)</title><h1>Paiement par carte (simulateur)</h1>"
                    f"<p>Montant : {transaction.amount} XOF</p>"
                    f'<form method="post"><button name="decision" value="ok">Payer</button>'
                    '<button name="decision" value="ko">Refuser</button></form>'
                )
                return self._send(200, page.encode(), "text/html; charset=utf-8")
            return self._send(404, {"message": "Not found"})

        def do_POST(self) -> None:
            path = urlparse(self.path).path
            sim.requests.append(("POST", path))
            body = self._body()
            if path == "/_control/mode":
                sim.mode = str(body.get("mode") or "normal")
                sim.delay = float(body.get("delay") or 0)
                return self._send(200, {"mode": sim.mode})
            if match := re.fullmatch(r"/_control/transactions/([^/]+)", path):
                if match.group(1) not in sim.transactions:
                    return self._send(404, {"message": "Transaction not found"})
                amount = body.get("amount")
                sim.set_status(match.group(1), str(body.get("status")), int(amount) if amount is not None else None)
                return self._send(200, {"ok": True})
            if match := re.fullmatch(r"/_control/notify/([^/]+)", path):
                if match.group(1) not in sim.transactions:
                    return self._send(404, {"message": "Transaction not found"})
                amount = body.get("amount")
                code = sim.notify(match.group(1), body.get("status"), int(amount) if amount is not None else None)
                return self._send(200, {"delivered": code})
            if match := re.fullmatch(r"/pay/card/([^/]+)", path):
                transaction = sim.transactions.get(match.group(1))
                if transaction is None:
                    return self._send(404, {"message": "Transaction not found"})
                ok = body.get("decision") == "ok"
                sim.set_status(transaction.reference, "SUCCESSFUL" if ok else "FAILED")
                target = (transaction.callback_url or "/") + ("&" if "?" in (transaction.callback_url or "") else "?")
                self.send_response(303)
                self.send_header("Location", target + urlencode({"ref": transaction.reference}))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            legacy = path.endswith("/integration")
            if not self._authorised(body, legacy):
                return None
            if str(body.get("shop") or "") != sim.shop:
                return self._send(404, {"message": "Shop not found"})
            if self._faulty():
                return None
            try:
                amount = int(body.get("amount"))
            except (TypeError, ValueError):
                return self._send(400, {"status": "FAILED", "message": "Invalid amount"})
            if amount < 50:
                return self._send(400, {"status": "FAILED", "message": "Amount below the operator minimum"})
            if path == "/api/transactions/public/initcard":
                transaction = sim.create(amount, str(body.get("phone") or ""), "card", body.get("callback_info"))
                transaction.outcome = "PENDING"  # the card page decides
                transaction.callback_url = body.get("callback_url")
                return self._send(
                    200, {"url": f"{sim.base_url}/pay/card/{transaction.reference}", "reference": transaction.reference}
                )
            if path == "/api/transactions/requesttopay/integration":
                network = LEGACY_LABELS.get(str(body.get("reseau") or "").upper().replace("_", " "))
            elif match := re.fullmatch(r"/api/transactions/public/requesttopay/([^/]+)", path):
                network = match.group(1) if match.group(1) in ALL_NETWORKS else None
            else:
                return self._send(404, {"message": "Not found"})
            if network is None:
                return self._send(404, {"message": "channel not configured"})
            phone = str(body.get("phoneNumber") or "")
            if not phone.isdigit() or len(phone) < 10:
                return self._send(400, {"status": "FAILED", "message": "Invalid phone number"})
            transaction = sim.create(amount, phone, network, body.get("callback_info"))
            return self._send(200, {"reference": transaction.reference, "status": "PENDING", "message": "Pending"})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="FeexPay simulator (loopback only)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--settle-after", type=float, default=3.0)
    parser.add_argument("--notify-url", default=None)
    args = parser.parse_args()
    sim = Simulator("127.0.0.1", args.port, args.settle_after, args.notify_url).start()
    print(f"FeexPay simulator on {sim.base_url} (shop {sim.shop}, key {API_KEY[:6]}…)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sim.stop()


if __name__ == "__main__":
    main()
