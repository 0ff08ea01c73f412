"""Signed checkpoints of chain heads, kept outside the journal table.

A hash chain cannot tell that its newest entries were cut off: the shorter chain is still
a valid chain. Each checkpoint anchors (chain, seq, head hash) in an append-only JSONL
file under instance/, signed with an Ed25519 key held like the master key, so a journal
shorter than (or different from) its last checkpoint is detected.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from flask import current_app

from portal.database import utcnow


@dataclass(frozen=True)
class Checkpoint:
    chain_id: int
    seq: int
    head_hash: str
    at: str
    key_id: str
    signature: str
    line: int
    valid_signature: bool


def key_path() -> Path:
    configured = current_app.config.get("COFFRE_JOURNAL_KEY_FILE")
    return Path(configured) if configured else Path(current_app.instance_path) / "journal_signing.key"


def checkpoint_path() -> Path:
    configured = current_app.config.get("COFFRE_JOURNAL_CHECKPOINT_FILE")
    return Path(configured) if configured else Path(current_app.instance_path) / "journal_checkpoints.jsonl"


def _load_or_create_key(path: Path) -> Ed25519PrivateKey:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raw = base64.b64decode(path.read_bytes().strip())
        return Ed25519PrivateKey.from_private_bytes(raw)
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64encode(raw) + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key


def signing_key() -> Ed25519PrivateKey:
    return _load_or_create_key(key_path())


def key_id_of(public_key: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def _signed_bytes(chain_id: int, seq: int, head_hash: str, at: str, key_id: str) -> bytes:
    payload = {"chain_id": chain_id, "seq": seq, "head_hash": head_hash, "at": at, "key_id": key_id}
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def write_checkpoint(chain_id: int, seq: int, head_hash: str, *, at: datetime | None = None) -> dict[str, object]:
    """Append one signed checkpoint line; fsynced before returning."""
    key = signing_key()
    key_id = key_id_of(key.public_key())
    stamp = (at or utcnow()).isoformat(timespec="seconds")
    signature = key.sign(_signed_bytes(chain_id, seq, head_hash, stamp, key_id))
    record = {
        "chain_id": chain_id,
        "seq": seq,
        "head_hash": head_hash,
        "at": stamp,
        "key_id": key_id,
        "signature": base64.b64encode(signature).decode(),
    }
    line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()
    path = checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        # Several workers may checkpoint at once: one whole line per writer.
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return record


def read_checkpoints(chain_id: int | None = None) -> Iterator[Checkpoint]:
    """Every checkpoint line (of one chain), with its signature checked."""
    path = checkpoint_path()
    if not path.exists():
        return
    public_key = signing_key().public_key()
    own_key_id = key_id_of(public_key)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
                cp_chain = int(data["chain_id"])
                seq = int(data["seq"])
                head_hash = str(data["head_hash"])
                at = str(data["at"])
                key_id = str(data["key_id"])
                signature = str(data["signature"])
            except (ValueError, KeyError, TypeError):
                # A line that does not even parse is as bad as a forged one.
                if chain_id is None:
                    yield Checkpoint(-1, 0, "", "", "", "", number, False)
                continue
            if chain_id is not None and cp_chain != chain_id:
                continue
            valid = key_id == own_key_id
            if valid:
                try:
                    public_key.verify(base64.b64decode(signature), _signed_bytes(cp_chain, seq, head_hash, at, key_id))
                except (InvalidSignature, ValueError):
                    valid = False
            yield Checkpoint(cp_chain, seq, head_hash, at, key_id, signature, number, valid)


def last_checkpointed_seqs() -> dict[int, int]:
    latest: dict[int, int] = {}
    for checkpoint in read_checkpoints():
        if checkpoint.valid_signature:
            latest[checkpoint.chain_id] = max(latest.get(checkpoint.chain_id, 0), checkpoint.seq)
    return latest
