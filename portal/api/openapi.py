"""The OpenAPI 3.1 description of /api/v1, kept next to the code it describes.

A test compares its paths with the blueprint's URL rules, and a schemathesis run checks
the live responses against these schemas.
"""

from __future__ import annotations

from typing import Any

from portal.api.problems import PROBLEM_TYPES
from portal.search.services import COUNT_CAP as SEARCH_COUNT_CAP
from portal.search.services import SORTS as SEARCH_SORTS
from portal.search.services import TYPES as SEARCH_TYPES

JSON = "application/json"
PROBLEM = "application/problem+json"
ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
STAMP = {"type": "string", "format": "date-time"}
NULLABLE_STAMP = {"type": ["string", "null"], "format": "date-time"}
# The API refuses NUL characters in any text field.
NO_NUL = "^[^\u0000]*$"
SEARCH_TEXT = {"type": "string", "maxLength": 100, "pattern": NO_NUL}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema_name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(schema_name)}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": _ref("Problem")}}}


def _problems(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "Malformed request",
        401: "Missing, invalid, expired or revoked token",
        403: "The role does not allow this, two-factor enrolment is required, or (uploads) the "
        "organisation's subscription is read-only (`type` /problems/subscription-read-only)",
        404: "Not found in the caller's organisation",
        409: "Conflict with the current state (or stored content unavailable)",
        413: "Too large, or the organisation's storage quota is reached",
        415: "Unsupported content type",
        422: "Invalid fields (see `errors`)",
        410: "The upload expired",
        412: "Tus-Resumable is not 1.0.0",
        423: "Locked (another request is appending to this upload)",
        460: "Upload-Checksum does not match the body: nothing of it was kept",
        503: "The work failed (a backup run in the request: see `detail`)",
        507: "Server storage full",
        429: "Too many requests (see `Retry-After`)",
    }
    return {str(status): _problem(texts[status]) for status in statuses}


PATH_ID = {"in": "path", "required": True, "schema": ID_SCHEMA}
UPLOAD_ID = {
    "name": "upload_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
TUS_HEADERS: list[dict[str, Any]] = [
    {"name": "Tus-Resumable", "in": "header", "required": True, "schema": {"type": "string", "enum": ["1.0.0"]}}
]
AUTHED = (400, 401, 403, 429)
PERIOD = {
    "name": "periode",
    "in": "query",
    "schema": {"type": "integer", "enum": [7, 30, 90, 365]},
    "description": "Days ending today (365 = 12 months); 30 if absent",
}
_COUNT = {"type": "integer", "minimum": 0}
_COUNTS = {"type": "object", "additionalProperties": _COUNT}


ON_CONFLICT_SCHEMA: dict[str, Any] = {
    "type": "string",
    "enum": ["version", "rename", "refuse"],
    "description": (
        "A live file of that name is already in the folder: add a new version of it, keep both "
        '(the new one renamed "nom (2).pdf") or refuse with 409 and `existing_file_id` (the default)'
    ),
}


def _upload_body(with_armoire: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required = ["file"]
    if with_armoire:
        properties["armoire_id"] = ID_SCHEMA
        properties["folder"] = ID_SCHEMA
        properties["on_conflict"] = ON_CONFLICT_SCHEMA
        required.insert(0, "armoire_id")
    else:
        properties["comment"] = {"type": "string", "maxLength": 500, "pattern": NO_NUL}
    properties["delete_after_upload"] = {"type": "string", "enum": ["true", "false", "1", "0"]}
    properties["file"] = {"type": "string", "contentMediaType": "application/octet-stream"}
    return {
        "required": True,
        "description": (
            "Text fields MUST come before the `file` part: the body is decoded as it arrives and "
            "the file is encrypted to storage without being buffered, so later fields are not seen."
        ),
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": properties, "required": required}}
        },
    }


SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {
                "type": "string",
                "description": "Stable identifier of the error kind",
                "examples": sorted(PROBLEM_TYPES),
            },
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
            "challenge": {"type": "string", "description": "Send back with the e-mailed code"},
            "existing_file_id": {"type": "integer", "description": "name-taken: the file already using the name"},
            "method": {"type": ["string", "null"]},
        },
    },
    "TokenRequest": {
        "type": "object",
        "required": ["email", "password"],
        "properties": {
            "email": {"type": "string", "minLength": 1, "maxLength": 254, "pattern": NO_NUL},
            "password": {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": NO_NUL},
            "code": {"type": "string", "maxLength": 64, "pattern": NO_NUL, "description": "TOTP, e-mail or recovery"},
            "challenge": {"type": "string", "maxLength": 100, "pattern": NO_NUL},
            "name": {"type": "string", "maxLength": 100, "pattern": NO_NUL},
            "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 365},
        },
    },
    "TokenInfo": {
        "type": "object",
        "required": ["id", "name", "prefix", "created_at", "expires_at", "last_used_at"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "prefix": {"type": "string"},
            "created_at": STAMP,
            "expires_at": STAMP,
            "last_used_at": NULLABLE_STAMP,
        },
    },
    "NewToken": {
        "allOf": [
            _ref("TokenInfo"),
            {
                "type": "object",
                "required": ["token", "token_type"],
                "properties": {"token": {"type": "string"}, "token_type": {"const": "Bearer"}},
            },
        ]
    },
    "Me": {
        "type": "object",
        "required": ["id", "email", "name", "role", "two_factor", "permissions", "organization"],
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": "string"},
            "name": {"type": "string"},
            "role": {"type": "string", "enum": ["admin", "contributeur", "lecteur"]},
            "locale": {"type": ["string", "null"]},
            "two_factor": {"type": "boolean"},
            "permissions": {"type": "array", "items": {"type": "string"}},
            "organization": {
                "type": "object",
                "required": ["id", "name"],
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
            },
            "token": {"oneOf": [_ref("TokenInfo"), {"type": "null"}]},
        },
        "additionalProperties": False,
    },
    "DashboardGlobal": {
        "type": "object",
        "required": [
            "armoires",
            "folders",
            "documents",
            "versions",
            "members",
            "bytes_used",
            "quota_bytes",
            "activity",
        ],
        "properties": {
            "periode": {"type": "integer"},
            "armoires": _COUNT,
            "folders": _COUNT,
            "documents": _COUNT,
            "versions": _COUNT,
            "members": {
                "type": "object",
                "required": ["admin", "contributeur", "lecteur"],
                "properties": {"admin": _COUNT, "contributeur": _COUNT, "lecteur": _COUNT},
            },
            "bytes_used": _COUNT,
            "quota_bytes": {"type": ["integer", "null"]},
            "two_factor": {"type": "object", "properties": {"enabled": _COUNT, "members": _COUNT}},
            "activity": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["date", "uploads", "downloads", "deletions"],
                    "properties": {
                        "date": {"type": "string", "format": "date"},
                        "uploads": _COUNT,
                        "downloads": _COUNT,
                        "deletions": _COUNT,
                    },
                },
            },
            "top_armoires_by_size": {"type": "array", "items": {"type": "object"}},
            "top_armoires_by_activity": {"type": "array", "items": {"type": "object"}},
            "last_backup": {
                "type": ["object", "null"],
                "properties": {
                    "id": {"type": "integer"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "status": {"type": "string"},
                    "verified_at": {"type": ["string", "null"], "format": "date-time"},
                    "verification_ok": {"type": ["boolean", "null"]},
                },
            },
        },
    },
    "DashboardMember": {
        "type": "object",
        "required": ["user_id", "actions", "per_day", "files_touched", "last_logins"],
        "properties": {
            "periode": {"type": "integer"},
            "user_id": {"type": "integer"},
            "actions": _COUNTS,
            "per_day": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["date", "total", "actions"],
                    "properties": {"date": {"type": "string", "format": "date"}, "total": _COUNT, "actions": _COUNTS},
                },
            },
            "files_touched": _COUNT,
            "last_logins": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["at", "ip", "device"],
                    "properties": {
                        "at": STAMP,
                        "ip": {"type": ["string", "null"]},
                        "user_agent": {"type": ["string", "null"]},
                        "device": {"type": "string"},
                    },
                },
            },
        },
    },
    "Armoire": {
        "type": "object",
        "required": ["id", "name", "description", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "description": {"type": ["string", "null"]},
            "created_at": STAMP,
        },
    },
    "ArmoireList": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("Armoire")}},
    },
    "SearchResults": {
        "type": "object",
        "required": ["items", "total", "total_capped"],
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "name", "path", "armoire_id", "folder_id", "size", "modified_at"],
                    "properties": {
                        "id": {"type": "integer"},
                        "name": {"type": "string"},
                        "path": {"type": "string", "description": "Armoire / folder / sub-folder"},
                        "armoire_id": {"type": "integer"},
                        "folder_id": {"type": ["integer", "null"]},
                        "size": {"type": "integer"},
                        "mime_type": {"type": "string"},
                        "modified_at": {"type": ["string", "null"]},
                    },
                },
            },
            "total": {
                "type": "integer",
                "maximum": SEARCH_COUNT_CAP,
                "description": f"Matching files, counted up to {SEARCH_COUNT_CAP:,}: when more match, total is "
                f"{SEARCH_COUNT_CAP:,} and total_capped is true (pages stop there; narrow the search to reach "
                "the others)",
            },
            "total_capped": {"type": "boolean", "description": f"More than {SEARCH_COUNT_CAP:,} files match"},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
        },
    },
    "File": {
        "type": "object",
        "required": ["id", "name", "armoire_id", "folder_id", "size", "mime_type", "version", "sha256"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "armoire_id": {"type": "integer"},
            "folder_id": {"type": ["integer", "null"]},
            "size": {"type": "integer", "minimum": 0},
            "mime_type": {"type": "string"},
            "version": {"type": ["integer", "null"]},
            "sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
            "created_at": STAMP,
            "updated_at": STAMP,
            "deleted_at": NULLABLE_STAMP,
        },
    },
    "FilePage": {
        "type": "object",
        "required": ["items", "page", "per_page", "total", "pages"],
        "properties": {
            "items": {"type": "array", "items": _ref("File")},
            "page": {"type": "integer", "minimum": 1},
            "per_page": {"type": "integer", "minimum": 1, "maximum": 100},
            "total": {"type": "integer", "minimum": 0},
            "pages": {"type": "integer", "minimum": 1},
        },
    },
    "Version": {
        "type": "object",
        "required": ["number", "size", "sha256", "mime_type", "created_at"],
        "properties": {
            "number": {"type": "integer", "minimum": 1},
            "size": {"type": "integer", "minimum": 0},
            "sha256": {"type": ["string", "null"]},
            "mime_type": {"type": "string"},
            "comment": {"type": ["string", "null"]},
            "author_id": {"type": ["integer", "null"]},
            "created_at": STAMP,
        },
    },
    "VersionList": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("Version")}},
    },
    "FolderList": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "name", "parent_id"],
                    "properties": {
                        "id": {"type": "integer"},
                        "name": {"type": "string"},
                        "parent_id": {"type": ["integer", "null"]},
                    },
                },
            }
        },
    },
    "UploadReceipt": {
        "type": "object",
        "required": ["upload_id", "length", "offset", "complete", "filename", "armoire_id", "expires_at"],
        "properties": {
            "upload_id": {"type": "string"},
            "length": {"type": "integer", "minimum": 0},
            "offset": {"type": "integer", "minimum": 0},
            "complete": {"type": "boolean", "description": "The receipt fields below are present only when true"},
            "filename": {"type": "string"},
            "armoire_id": {"type": "integer"},
            "folder_id": {"type": ["integer", "null"]},
            "on_conflict": {"type": "string", "enum": ["version", "rename", "refuse"]},
            "expires_at": STAMP,
            "file_id": {"type": "integer"},
            "version": {"type": "integer", "minimum": 1},
            "size": {"type": "integer", "minimum": 0},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "delete_local": {"type": "boolean"},
            "name": {"type": "string"},
            "mime_type": {"type": "string"},
            "created_at": STAMP,
        },
    },
    "Receipt": {
        "type": "object",
        "description": "Sent only once the content is durable (blob fsynced, row committed).",
        "required": ["file_id", "version", "size", "sha256", "delete_local", "name", "mime_type", "created_at"],
        "properties": {
            "file_id": {"type": "integer"},
            "version": {"type": "integer", "minimum": 1},
            "size": {"type": "integer", "minimum": 0},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "Of the bytes received"},
            "delete_local": {
                "type": "boolean",
                "description": "True only when delete_after_upload was asked and storage succeeded",
            },
            "name": {"type": "string"},
            "mime_type": {"type": "string"},
            "created_at": STAMP,
        },
    },
}


def _paths() -> dict[str, Any]:
    secured = [{"bearer": []}]
    return {
        "/auth/token": {
            "post": {
                "operationId": "createToken",
                "summary": "Exchange e-mail, password and (with 2FA) a code for a bearer token",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {"schema": _ref("TokenRequest")},
                        "application/x-www-form-urlencoded": {"schema": _ref("TokenRequest")},
                    },
                },
                "responses": {"201": _json("NewToken", "Token created; the secret is shown only here")}
                | _problems(400, 401, 403, 413, 415, 422, 429),
            },
            "delete": {
                "operationId": "revokeToken",
                "summary": "Revoke the token that authenticates this request",
                "security": secured,
                "responses": {"204": {"description": "Revoked"}} | _problems(*AUTHED),
            },
        },
        "/me": {
            "get": {
                "operationId": "me",
                "security": secured,
                "responses": {"200": _json("Me", "The caller")} | _problems(*AUTHED),
            }
        },
        "/armoires": {
            "get": {
                "operationId": "listArmoires",
                "security": secured,
                "responses": {"200": _json("ArmoireList", "Armoires of the organisation")} | _problems(*AUTHED),
            }
        },
        "/armoires/{armoire_id}/fichiers": {
            "get": {
                "operationId": "listFiles",
                "security": secured,
                "parameters": [
                    PATH_ID | {"name": "armoire_id"},
                    {"name": "folder", "in": "query", "schema": ID_SCHEMA, "description": "Folder id; root if absent"},
                    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000000}},
                    {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                ],
                "responses": {"200": _json("FilePage", "One page of live files")} | _problems(*AUTHED, 404, 422),
            }
        },
        "/armoires/{armoire_id}/dossiers": {
            "get": {
                "operationId": "listFolders",
                "summary": "Every folder of the armoire (id, name, parent_id), to resolve a path",
                "security": secured,
                "parameters": [PATH_ID | {"name": "armoire_id"}],
                "responses": {"200": _json("FolderList", "Folders")} | _problems(*AUTHED, 404),
            }
        },
        "/recherche": {
            "get": {
                "operationId": "searchFiles",
                "summary": "Search the organisation's live files (accent- and case-insensitive names)",
                "description": f"The count stops at {SEARCH_COUNT_CAP:,} matches (total_capped is then true and "
                'total is the cap); clients such as the desktop app should show it as "more than" and not page '
                "past it.",
                "security": secured,
                "parameters": [
                    {"name": "q", "in": "query", "schema": SEARCH_TEXT},
                    {"name": "dossier", "in": "query", "schema": SEARCH_TEXT},
                    {"name": "auteur", "in": "query", "schema": SEARCH_TEXT},
                    {"name": "type", "in": "query", "schema": {"type": "string", "enum": list(SEARCH_TYPES)}},
                    {"name": "du", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "au", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "tri", "in": "query", "schema": {"type": "string", "enum": list(SEARCH_SORTS)}},
                    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000000}},
                    {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                ],
                "responses": {"200": _json("SearchResults", "Matching files with their path")}
                | _problems(*AUTHED, 422),
            }
        },
        "/fichiers": {
            "post": {
                "operationId": "uploadFile",
                "summary": "Upload a new file (streamed, encrypted at rest); answers with a receipt",
                "security": secured,
                "parameters": [
                    {
                        "name": "on_conflict",
                        "in": "query",
                        "schema": ON_CONFLICT_SCHEMA,
                        "description": "Or a form field",
                    }
                ],
                "requestBody": _upload_body(with_armoire=True),
                "responses": {
                    "201": _json("Receipt", "Stored durably")
                    | {"headers": {"Location": {"schema": {"type": "string"}}}}
                }
                | _problems(*AUTHED, 404, 409, 413, 415, 422, 423),
            }
        },
        "/uploads/": {
            "post": {
                "operationId": "createUpload",
                "summary": "tus 1.0 creation: register a resumable upload (OPTIONS: Tus-Version, Tus-Extension)",
                "description": (
                    "Extensions: creation, termination, checksum (sha1, sha256, md5). `Upload-Metadata` keys: "
                    "`filename` and `armoire_id` (required), `folder_id`, `on_conflict` (version|rename|refuse, "
                    "default refuse, decided when the last byte arrives), `delete_after_upload`. "
                    "`HEAD` on the Location gives `Upload-Offset`; an unfinished upload expires after 24 hours."
                ),
                "security": secured,
                "parameters": [
                    *TUS_HEADERS,
                    {
                        "name": "Upload-Length",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                    },
                    {
                        "name": "Upload-Metadata",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "maxLength": 4096},
                    },
                ],
                "responses": {
                    "201": {
                        "description": "Created; PATCH the bytes to Location",
                        "headers": {
                            "Location": {"schema": {"type": "string"}},
                            "Upload-Offset": {"schema": {"type": "string"}},
                            "Tus-Resumable": {"schema": {"type": "string"}},
                        },
                    }
                }
                | _problems(*AUTHED, 404, 412, 413, 415),
            }
        },
        "/uploads/{upload_id}": {
            "parameters": [UPLOAD_ID],
            "get": {
                "operationId": "getUpload",
                "summary": "The upload's progress, and its receipt once the last byte is sealed and committed",
                "security": secured,
                "responses": {"200": _json("UploadReceipt", "Progress or receipt")} | _problems(*AUTHED, 404, 410),
            },
            "patch": {
                "operationId": "patchUpload",
                "summary": "tus 1.0: append bytes at Upload-Offset",
                "description": (
                    "The answer's Upload-Offset is what is durably sealed (a multiple of 1 MiB until the end): "
                    "bytes after it were not kept and are sent again. The PATCH that completes the upload "
                    "answers `Coffre-File-Id` and `Coffre-Version`."
                ),
                "security": secured,
                "parameters": [
                    *TUS_HEADERS,
                    {
                        "name": "Upload-Offset",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                    },
                    {"name": "Upload-Checksum", "in": "header", "schema": {"type": "string", "maxLength": 200}},
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/offset+octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                },
                "responses": {
                    "204": {
                        "description": "Appended (and, for the last part, stored durably)",
                        "headers": {
                            "Upload-Offset": {"schema": {"type": "string"}},
                            "Coffre-File-Id": {"schema": {"type": "string"}},
                            "Coffre-Version": {"schema": {"type": "string"}},
                        },
                    }
                }
                | _problems(*AUTHED, 404, 409, 410, 412, 413, 415, 423, 460, 507),
            },
            "delete": {
                "operationId": "terminateUpload",
                "summary": "tus termination: stop the upload and remove what was received",
                "security": secured,
                "parameters": TUS_HEADERS,
                "responses": {"204": {"description": "Terminated"}} | _problems(*AUTHED, 404, 412, 423),
            },
        },
        "/fichiers/{file_id}": {
            "parameters": [PATH_ID | {"name": "file_id"}],
            "get": {
                "operationId": "getFile",
                "security": secured,
                "responses": {"200": _json("File", "The file")} | _problems(*AUTHED, 404),
            },
            "delete": {
                "operationId": "trashFile",
                "summary": "Move the file to the trash (423 under retention or a legal hold)",
                "security": secured,
                # Not listed as parameters: OpenAPI cannot say that motif is required with contourner.
                "description": "A member holding the 'contourner la conservation' grant deletes a file under a "
                "gouvernance retention with `?contourner=1&motif=<reason>` (422 without a reason).",
                "responses": {"204": {"description": "In the trash"}} | _problems(*AUTHED, 404, 422, 423),
            },
        },
        "/fichiers/{file_id}/contenu": {
            "get": {
                "operationId": "downloadFile",
                "security": secured,
                "parameters": [
                    PATH_ID | {"name": "file_id"},
                    {"name": "version", "in": "query", "schema": ID_SCHEMA, "description": "Current if absent"},
                ],
                "responses": {
                    "200": {
                        "description": "The decrypted content, streamed",
                        "headers": {
                            "Repr-Digest": {"schema": {"type": "string"}, "description": "RFC 9530 sha-256"},
                            "X-Content-SHA256": {"schema": {"type": "string"}},
                        },
                        "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                    }
                }
                | _problems(*AUTHED, 404, 409, 422),
            }
        },
        "/fichiers/{file_id}/versions": {
            "parameters": [PATH_ID | {"name": "file_id"}],
            "get": {
                "operationId": "listVersions",
                "security": secured,
                "responses": {"200": _json("VersionList", "Versions, newest first")} | _problems(*AUTHED, 404),
            },
            "post": {
                "operationId": "addVersion",
                "security": secured,
                "requestBody": _upload_body(with_armoire=False),
                "responses": {"201": _json("Receipt", "Stored durably")}
                | _problems(*AUTHED, 404, 409, 413, 415, 422, 423),
            },
        },
        "/dashboard/global": {
            "get": {
                "operationId": "dashboardGlobal",
                "summary": "The organisation's figures over a period (admin)",
                "security": secured,
                "parameters": [PERIOD],
                "responses": {"200": _json("DashboardGlobal", "Figures")} | _problems(*AUTHED, 422),
            }
        },
        "/dashboard/utilisateur/{user_id}": {
            "get": {
                "operationId": "dashboardMember",
                "summary": "One member's activity over a period (admin, or the member themself)",
                "security": secured,
                "parameters": [PATH_ID | {"name": "user_id"}, PERIOD],
                "responses": {"200": _json("DashboardMember", "Activity")} | _problems(*AUTHED, 404, 422),
            }
        },
        "/abonnement": {
            "get": {
                "operationId": "getSubscription",
                "summary": "Plan, status, period end, usage and quotas (admins)",
                "security": secured,
                "responses": {
                    "200": {"description": "The subscription", "content": {JSON: {"schema": {"type": "object"}}}}
                }
                | _problems(*AUTHED),
            }
        },
        "/factures": {
            "get": {
                "operationId": "listInvoices",
                "security": secured,
                "responses": {
                    "200": {
                        "description": "Invoices and credit notes, newest first",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                }
                | _problems(*AUTHED),
            }
        },
        "/factures/{invoice_id}/pdf": {
            "get": {
                "operationId": "downloadInvoice",
                "security": secured,
                "parameters": [PATH_ID | {"name": "invoice_id"}],
                "responses": {
                    "200": {
                        "description": "The invoice as stored",
                        "content": {"application/pdf": {"schema": {"type": "string"}}},
                    }
                }
                | _problems(*AUTHED, 404),
            }
        },
        **_backup_paths(secured),
        **_compliance_paths(secured),
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "security": [],
                "responses": {
                    "200": {"description": "This document", "content": {JSON: {"schema": {"type": "object"}}}}
                },
            }
        },
    }


def _compliance_paths(secured: list[dict[str, list[str]]]) -> dict[str, Any]:
    """Retention, legal holds, bypass grants, disposition (portal/compliance/api.py): admin tokens."""
    obj = {"type": "object"}

    def ok(status: str, description: str, schema: dict[str, Any] = obj) -> dict[str, Any]:
        return {status: {"description": description, "content": {JSON: {"schema": schema}}}}

    target = {
        "target_type": {"type": "string", "enum": ["armoire", "folder", "file"]},
        "target_id": ID_SCHEMA,
    }
    # Something visible: a blank reason is refused like a missing one.
    text = {"type": "string", "minLength": 1, "maxLength": 500, "pattern": "^[^\u0000]*[^\\s\u0000][^\u0000]*$"}
    rule_body = {
        "type": "object",
        "required": ["target_type", "target_id", "duration_days", "mode", "from"],
        "properties": target
        | {
            "duration_days": {"type": "integer", "minimum": 1, "maximum": 73200},
            "mode": {"type": "string", "enum": ["gouvernance", "conformite"]},
            "from": {"type": "string", "enum": ["upload", "last_version", "event"]},
        },
    }
    hold_body = {
        "type": "object",
        "required": ["target_type", "target_id", "reason", "reference"],
        "properties": target | {"reason": text, "reference": text | {"maxLength": 120}},
    }
    target_query = [
        {"name": "target_type", "in": "query", "required": True, "schema": target["target_type"]},
        {"name": "target_id", "in": "query", "required": True, "schema": ID_SCHEMA},
    ]
    motif = {"name": "motif", "in": "query", "schema": text}
    in_force = {
        "type": "object",
        "required": ["rule", "inherited_from", "expires_at"],
        "properties": {
            "rule": {"type": ["object", "null"]},
            "inherited_from": {"type": ["object", "null"]},
            "expires_at": NULLABLE_STAMP,
        },
    }

    def body(schema: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {JSON: {"schema": schema}}}

    return {
        "/conservation": {
            "post": {
                "operationId": "createRetentionRule",
                "security": secured,
                "requestBody": body(rule_body),
                "responses": ok("201", "The rule") | _problems(*AUTHED, 404, 409, 415, 422),
            },
            "get": {
                "operationId": "retentionInForce",
                "summary": "The rule in force on a target, its own or inherited",
                "security": secured,
                "parameters": target_query,
                "responses": ok("200", "The rule in force", in_force) | _problems(*AUTHED, 404, 422),
            },
        },
        "/conservation/{rule_id}": {
            "patch": {
                "operationId": "changeRetentionRule",
                "summary": "Lengthen (or, in gouvernance with the bypass and a reason, shorten) a rule",
                "security": secured,
                "parameters": [PATH_ID | {"name": "rule_id"}],
                "requestBody": body(
                    {
                        "type": "object",
                        "required": ["duration_days"],
                        "properties": {
                            "duration_days": {"type": "integer", "minimum": 1, "maximum": 73200},
                            "mode": {"type": "string", "enum": ["gouvernance", "conformite"]},
                            "reason": text,
                        },
                    }
                ),
                "responses": ok("200", "The rule") | _problems(*AUTHED, 404, 409, 415, 422),
            },
            "delete": {
                "operationId": "deleteRetentionRule",
                "security": secured,
                "parameters": [PATH_ID | {"name": "rule_id"}, motif],
                "responses": {"204": {"description": "Removed"}} | _problems(*AUTHED, 404, 409, 422),
            },
        },
        "/fichiers/{file_id}/evenement": {
            "put": {
                "operationId": "setFileEventDate",
                "security": secured,
                "parameters": [PATH_ID | {"name": "file_id"}],
                "requestBody": body(
                    {
                        "type": "object",
                        "required": ["date"],
                        "properties": {"date": {"type": "string", "format": "date"}},
                    }
                ),
                "responses": ok("200", "The event date") | _problems(*AUTHED, 404, 409, 415, 422),
            }
        },
        "/membres/{user_id}/contournement": {
            "put": {
                "operationId": "setRetentionBypass",
                "summary": "Grant or withdraw a member's 'contourner la conservation' permission",
                "security": secured,
                "parameters": [PATH_ID | {"name": "user_id"}],
                "requestBody": body(
                    {"type": "object", "required": ["granted"], "properties": {"granted": {"type": "boolean"}}}
                ),
                "responses": ok("200", "The grant") | _problems(*AUTHED, 404, 415, 422),
            }
        },
        "/verrouillages": {
            "post": {
                "operationId": "placeLegalHold",
                "security": secured,
                "requestBody": body(hold_body),
                "responses": ok("201", "The hold") | _problems(*AUTHED, 404, 415, 422),
            },
            "get": {
                "operationId": "listLegalHolds",
                "security": secured,
                "responses": ok("200", "Active holds") | _problems(*AUTHED),
            },
        },
        "/verrouillages/{hold_id}": {
            "delete": {
                "operationId": "liftLegalHold",
                "security": secured,
                "parameters": [PATH_ID | {"name": "hold_id"}, motif | {"required": True}],
                "responses": ok("200", "The lifted hold") | _problems(*AUTHED, 404, 422),
            }
        },
        "/disposition": {
            "get": {
                "operationId": "dispositionQueue",
                "summary": "Files whose retention has expired, awaiting review",
                "security": secured,
                "responses": ok("200", "The queue") | _problems(*AUTHED),
            }
        },
        "/disposition/{file_id}": {
            "post": {
                "operationId": "decideDisposition",
                "security": secured,
                "parameters": [PATH_ID | {"name": "file_id"}],
                "requestBody": body(
                    {
                        "oneOf": [
                            {
                                "type": "object",
                                "required": ["decision"],
                                "properties": {"decision": {"const": "destroy"}},
                            },
                            {
                                "type": "object",
                                "required": ["decision", "extend_days"],
                                "properties": {
                                    "decision": {"const": "keep"},
                                    "extend_days": {"type": "integer", "minimum": 1, "maximum": 36600},
                                },
                            },
                        ]
                    }
                ),
                "responses": ok("201", "Kept longer, or destroyed with its certificate id")
                | _problems(*AUTHED, 404, 409, 415, 422, 423),
            }
        },
        "/certificats/{certificate_id}": {
            "get": {
                "operationId": "getCertificate",
                "summary": "The signed destruction certificate (JSON)",
                "security": secured,
                "parameters": [PATH_ID | {"name": "certificate_id"}],
                "responses": ok("200", "The signed certificate") | _problems(*AUTHED, 404),
            }
        },
        "/certificats/{certificate_id}.pdf": {
            "get": {
                "operationId": "getCertificatePdf",
                "security": secured,
                "parameters": [PATH_ID | {"name": "certificate_id"}],
                "responses": {
                    "200": {
                        "description": "Its PDF rendering",
                        "content": {"application/pdf": {"schema": {"type": "string"}}},
                    }
                }
                | _problems(*AUTHED, 404),
            }
        },
    }


def _backup_paths(secured: list[dict[str, list[str]]]) -> dict[str, Any]:
    """Backups and restores (portal/backups/api.py): admin tokens only."""
    backup_id = PATH_ID | {"name": "backup_id"}
    return {
        "/sauvegardes": {
            "get": {
                "operationId": "listBackups",
                "security": secured,
                "responses": {"200": _json("BackupList", "Backups, newest first")} | _problems(*AUTHED),
            },
            "post": {
                "operationId": "startBackup",
                "summary": "Start a backup; it runs in the background (or in the request with attendre=1)",
                "security": secured,
                "parameters": [
                    {
                        "name": "attendre",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["1", "true"]},
                        "description": "Run the backup in the request: 201 when done, 507 when the backup disk is full",
                    }
                ],
                "responses": {"201": _json("Backup", "Started (status en_cours), or done with attendre=1")}
                | _problems(*AUTHED, 503, 507),
            },
        },
        "/sauvegardes/{backup_id}": {
            "parameters": [backup_id],
            "get": {
                "operationId": "getBackup",
                "security": secured,
                "responses": {"200": _json("Backup", "One backup")} | _problems(*AUTHED, 404),
            },
        },
        "/sauvegardes/{backup_id}/restaurer": {
            "parameters": [backup_id],
            "post": {
                "operationId": "restoreBackup",
                "summary": "Restore a file, folder, armoire or everything as new versions (background job)",
                "security": secured,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("RestoreRequest")}},
                },
                "responses": {"202": _json("Restore", "Restore started")} | _problems(*AUTHED, 400, 404, 409, 415, 422),
            },
        },
        "/restaurations/{restore_id}": {
            "parameters": [PATH_ID | {"name": "restore_id"}],
            "get": {
                "operationId": "getRestore",
                "security": secured,
                "responses": {"200": _json("Restore", "A restore job")} | _problems(*AUTHED, 404),
            },
        },
    }


_COUNT = {"type": "integer", "minimum": 0}
SCHEMAS |= {
    "Backup": {
        "type": "object",
        "required": ["id", "created_at", "trigger", "status", "summary", "verified_at"],
        "properties": {
            "id": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "trigger": {"type": "string", "enum": ["manuel", "planifie", "pre_restauration"]},
            "status": {"type": "string", "enum": ["en_cours", "reussie", "echouee", "verifiee"]},
            "summary": {
                "type": "object",
                "properties": {k: _COUNT for k in ("files", "versions", "bytes", "new_bytes", "objects")},
            },
            "verified_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "BackupList": {"type": "object", "properties": {"items": {"type": "array", "items": _ref("Backup")}}},
    "RestoreRequest": {
        "type": "object",
        "description": "Exactly one of file_id, folder_id, armoire_id or all: true",
        "properties": {
            "file_id": ID_SCHEMA,
            "folder_id": ID_SCHEMA,
            "armoire_id": ID_SCHEMA,
            "all": {"type": "boolean", "const": True},
        },
        "minProperties": 1,
        "maxProperties": 1,
    },
    "Restore": {
        "type": "object",
        "required": ["id", "backup_id", "status", "counts", "skipped"],
        "properties": {
            "id": {"type": "integer"},
            "backup_id": {"type": "integer"},
            "status": {"type": "string", "enum": ["en_cours", "reussie", "echouee"]},
            "counts": {
                "type": "object",
                "properties": {k: _COUNT for k in ("restored", "unchanged", "skipped_purged", "failed")},
            },
            "skipped": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "file_id": {"type": "integer"},
                        "name": {"type": "string"},
                        "purged_at": {"type": ["string", "null"]},
                        "purged_by": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
}


def build_document(base_url: str | None = None) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Coffre API",
            "version": "1.0.0",
            "description": "Desktop and script access to Coffre. Errors are RFC 9457 problem documents.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "cof_…"}},
            "schemas": SCHEMAS,
        },
    }
