"""Encryption at rest for tenant secrets (provider keys, carrier tokens, webhook secrets).

``settings.ENCRYPTION_KEYS`` is a list of Fernet keys, newest first: the newest encrypts,
all of them decrypt, so rotation is "prepend a key, run ``rotate_encryption_keys``, drop
the old key". With no keys configured one key is derived from ``SECRET_KEY`` so the
embedded default works with zero setup.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django import forms
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models


def _derived_key(secret_key: str) -> bytes:
    digest = hashlib.sha256(b"glassbox-encryption-at-rest:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest)


@lru_cache(maxsize=8)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64 bytes). "
            "Generate one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from exc


def get_fernet() -> MultiFernet:
    # Read the settings on every call (cheap, cached by value) so override_settings and
    # rotation take effect without a restart of anything but the process.
    keys = tuple(k.strip() for k in settings.ENCRYPTION_KEYS if k.strip())
    if not keys:
        keys = (_derived_key(settings.SECRET_KEY).decode(),)
    return _multifernet(keys)


def encrypt_str(plaintext: str) -> str:
    return get_fernet().encrypt(plaintext.encode()).decode()


def decrypt_str(token: str) -> str:
    try:
        return get_fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with any key in ENCRYPTION_KEYS. Was a key "
            "removed before rotate_encryption_keys re-encrypted every row?"
        ) from exc


class EncryptedTextField(models.TextField):
    """A text column stored as a Fernet token; Python code only ever sees plaintext.

    The empty string is stored as-is (there is nothing to hide and it keeps "is a secret
    set?" a cheap check). Filtering on the column is meaningless (tokens are randomized).
    """

    description = "Text encrypted at rest"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return decrypt_str(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt_str(value)


class EncryptedJSONField(EncryptedTextField):
    """A JSON object stored as one Fernet token (e.g. an HTTP tool's auth headers).

    Python code sees a dict; an empty dict is stored as "" like an empty secret.
    """

    description = "JSON object encrypted at rest"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return value
        return json.loads(decrypt_str(value)) if value else {}

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value) if value else {}
            except ValueError as exc:
                raise ValidationError("Enter a JSON object.", code="invalid") from exc
        return value

    def formfield(
        self,
        form_class: type[forms.Field] | None = None,
        choices_form_class: type[forms.ChoiceField] | None = None,
        **kwargs: Any,
    ) -> forms.Field | None:
        # A JSON editor, not a text box showing a Python repr; admins exclude secret ones.
        return super(models.TextField, self).formfield(
            form_class=form_class or forms.JSONField,
            choices_form_class=choices_form_class,
            **kwargs,
        )

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return value
        if not value:
            return ""
        return encrypt_str(json.dumps(value, separators=(",", ":"), sort_keys=True))

    def value_to_string(self, obj: models.Model) -> str:
        return json.dumps(self.value_from_object(obj))


def encrypted_fields(model: type[models.Model]) -> list[str]:
    return [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]


if __name__ == "__main__":
    # `SECRET_KEY=... python -m glassbox.encryption`: the key that was derived from
    # SECRET_KEY while ENCRYPTION_KEYS was unset, to list after a new key before rotating.
    import os
    import sys

    secret = os.environ.get("SECRET_KEY", "")
    if not secret:
        sys.exit("Set SECRET_KEY to the value the secrets were stored under.")
    print(_derived_key(secret).decode())
