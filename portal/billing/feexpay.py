"""A FeexPay client: the public endpoints of shared/feexpay-protocol.md, with timeouts.

Nothing it returns is trusted for settlement except ``status()``, which Coffre calls
itself for a reference it created. Every failure becomes ``GatewayError`` with a message
a person can read; callers keep the payment pending and retrying stays safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_BASE_URL = "https://api-v2.feexpay.me"

# The network segments of the protocol notes (§3a), per country code.
NETWORKS: dict[str, tuple[str, ...]] = {
    "229": ("mtn", "moov", "celtiis_bj", "coris"),  # Bénin
    "228": ("togocom_tg", "moov_tg"),  # Togo
    "225": ("mtn_ci", "moov_ci", "orange_ci", "wave_ci"),  # Côte d'Ivoire
    "221": ("orange_sn", "free_sn", "wave_sn"),  # Sénégal
    "226": ("orange_bf", "moov_bf"),  # Burkina Faso
    "242": ("mtn_cg",),  # Congo
    "223": ("orange_ml", "mobicash_ml"),  # Mali
}
NETWORK_COUNTRY = {network: code for code, networks in NETWORKS.items() for network in networks}
# National number lengths; Benin moved from 8 to 10 digits (the old form gains a leading 01).
NATIONAL_LENGTH = {"229": 10, "228": 8, "225": 10, "221": 9, "226": 8, "242": 9, "223": 8}
SUCCESS_STATUSES = {"SUCCESSFUL", "SUCCESS"}
FAILURE_STATUSES = {"FAILED", "TIMEOUT", "INSUFFICIENT_FUNDS"}


class GatewayError(Exception):
    """FeexPay could not be reached or answered something unusable."""


class InvalidPhoneError(ValueError):
    pass


def normalise_phone(raw: str, network: str) -> str:
    """Digits with the country code and no ``+``; raises InvalidPhoneError."""
    country = NETWORK_COUNTRY[network]
    digits = re.sub(r"[\s.\-()]", "", raw or "")
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    if not digits.isdigit():
        raise InvalidPhoneError(raw)
    national = (
        digits[len(country) :] if digits.startswith(country) and len(digits) > NATIONAL_LENGTH[country] else digits
    )
    if country == "229" and len(national) == 8:
        national = "01" + national
    if len(national) != NATIONAL_LENGTH[country]:
        raise InvalidPhoneError(raw)
    return country + national


@dataclass(frozen=True)
class StatusAnswer:
    reference: str
    status: str  # normalised: PENDING, SUCCESSFUL or FAILED
    amount: int | None
    reason: str | None


class FeexPayClient:
    def __init__(self, base_url: str, api_key: str, shop: str, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.shop = shop
        self.timeout = timeout

    @classmethod
    def from_config(cls, config: Any) -> FeexPayClient:
        return cls(
            config.get("FEEXPAY_BASE_URL") or DEFAULT_BASE_URL,
            config.get("FEEXPAY_API_KEY") or "",
            config.get("FEEXPAY_SHOP_ID") or "",
            float(config.get("FEEXPAY_TIMEOUT", 15)),
        )

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = httpx.request(
                method,
                self.base_url + path,
                json=body,
                headers={"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"},
                timeout=self.timeout,
            )
        except httpx.TimeoutException as exc:
            raise GatewayError("FeexPay n'a pas répondu à temps") from exc
        except httpx.HTTPError as exc:
            raise GatewayError("FeexPay est injoignable") from exc
        try:
            data = response.json()
        except ValueError as exc:
            raise GatewayError(f"FeexPay a renvoyé une réponse illisible (HTTP {response.status_code})") from exc
        if not isinstance(data, dict):
            raise GatewayError("FeexPay a renvoyé une réponse illisible")
        if response.status_code not in (200, 201, 202):
            message = str(data.get("message") or data.get("error") or "")[:200]
            raise GatewayError(f"FeexPay a refusé la demande (HTTP {response.status_code}) {message}".strip())
        return data

    def request_to_pay(
        self, network: str, amount: int, phone: str, description: str, callback_info: str
    ) -> dict[str, Any]:
        data = self._call(
            "POST",
            f"/api/transactions/public/requesttopay/{network}",
            {
                "shop": self.shop,
                "amount": amount,
                "phoneNumber": phone,
                "description": re.sub(r"[^A-Za-z0-9 ]", " ", description)[:100],
                "callback_info": callback_info,
            },
        )
        if not data.get("reference") or str(data.get("status", "")).upper() == "FAILED":
            raise GatewayError(str(data.get("message") or "FeexPay n'a pas accepté la demande")[:200])
        return data

    def init_card(
        self, amount: int, phone: str, email: str, first_name: str, last_name: str, callback_url: str
    ) -> dict[str, Any]:
        data = self._call(
            "POST",
            "/api/transactions/public/initcard",
            {
                "shop": self.shop,
                "amount": amount,
                "phone": phone,
                "email": email,
                "first_name": first_name,
                "last_name": last_name,
                "type_card": "VISA",
                "currency": "XOF",
                "callback_url": callback_url,
            },
        )
        reference = data.get("reference") or data.get("transref")
        if not reference or not data.get("url"):
            raise GatewayError(str(data.get("message") or "FeexPay n'a pas ouvert la page de paiement")[:200])
        return {"reference": str(reference), "url": str(data["url"])}

    def status(self, reference: str) -> StatusAnswer:
        data = self._call("GET", f"/api/transactions/public/single/status/{reference}")
        raw = str(data.get("status") or "").upper()
        if raw in SUCCESS_STATUSES:
            status = "SUCCESSFUL"
        elif raw in FAILURE_STATUSES:
            status = "FAILED"
        elif raw in {"PENDING", "IN PENDING STATE"}:
            status = "PENDING"
        else:
            raise GatewayError("FeexPay a renvoyé un statut inconnu")
        amount = data.get("amount")
        try:
            amount = int(amount) if amount is not None and float(amount) == int(float(amount)) else None
        except (TypeError, ValueError):
            amount = None
        return StatusAnswer(str(data.get("reference") or ""), status, amount, data.get("reason"))
