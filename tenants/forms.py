"""Dashboard forms for accounts. Labels are what a person reads; errors say what to do."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm


def username_for_email(email: str) -> str:
    """The username to authenticate for an email address (case-insensitive).

    Users are created with their email as username; this keeps login working for an
    email typed in another case, and for older accounts whose username differs.
    """
    user_model = get_user_model()
    user = (
        user_model.objects.filter(email__iexact=email.strip()).order_by("-is_active", "id").first()
    )
    return user.get_username() if user is not None else email.strip()


class LoginForm(AuthenticationForm):
    """Email + password. Authentication goes through ``django.contrib.auth.authenticate``
    (in ``AuthenticationForm.clean``), so login-throttling backends see every attempt.

    The field keeps the name ``username`` on the wire: that is what Django's auth views and
    login-lockout tools expect to read.
    """

    username = forms.EmailField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Enter a correct email address and password.",
    }

    def __init__(self, request: Any = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(request, *args, **kwargs)
        self.fields["username"].label = "Email"
        self.fields["username"].max_length = 254
        self.fields["username"].widget.attrs["maxlength"] = 254

    def clean(self) -> dict[str, Any]:
        email = self.cleaned_data.get("username")
        if email:
            self.cleaned_data["username"] = username_for_email(email)
        return super().clean()
