"""Dashboard forms for accounts. Labels are what a person reads; errors say what to do."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm

from tenants.models import ApiKeyScope, Role


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
        username = self.fields["username"]
        assert isinstance(username, forms.CharField)  # Django's UsernameField
        username.label = "Email"
        username.max_length = 254
        username.widget.attrs["maxlength"] = 254

    def clean(self) -> dict[str, Any]:
        email = self.cleaned_data.get("username")
        if email:
            self.cleaned_data["username"] = username_for_email(email)
        return super().clean()


ROLE_HINT = (
    "Viewer: read only. Member: can change configuration. Admin: also API keys and "
    "members. Owner: everything, including billing and owners."
)


def _role_choices(actor_role: Role | str) -> list[tuple[str, str]]:
    # Only owners may hand out the owner role; offering it to admins would only fail later.
    roles = [Role.VIEWER, Role.MEMBER, Role.ADMIN]
    if Role(actor_role) == Role.OWNER:
        roles.append(Role.OWNER)
    return [(role.value, role.label) for role in roles]


def _role_field(form: forms.Form) -> forms.ChoiceField:
    """The form's ``role`` field, typed: ``form.fields`` only promises a ``Field``."""
    field = form.fields["role"]
    assert isinstance(field, forms.ChoiceField)
    return field


class InviteForm(forms.Form):
    email = forms.EmailField(
        label="Email address",
        max_length=254,
        help_text="We'll email them a link to join. It works once and expires in 7 days.",
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
    role = forms.ChoiceField(label="Role", help_text=ROLE_HINT)

    def __init__(self, *args: Any, actor_role: Role | str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _role_field(self).choices = _role_choices(actor_role)
        _role_field(self).initial = Role.MEMBER.value


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", help_text=ROLE_HINT)

    def __init__(self, *args: Any, actor_role: Role | str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _role_field(self).choices = _role_choices(actor_role)


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=100,
        required=False,
        help_text="So you can tell keys apart later, for example 'CI' or 'billing sync'.",
    )
    scope = forms.ChoiceField(
        label="Access",
        choices=ApiKeyScope.choices,
        initial=ApiKeyScope.FULL.value,
        widget=forms.RadioSelect,
        help_text="A read-only key can list and read everything but change nothing.",
    )


class NewAccountPasswordForm(forms.Form):
    """The password of an account created by accepting an invitation."""

    new_password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 8 characters; not a common password.",
    )
    new_password2 = forms.CharField(
        label="Confirm password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean_new_password1(self) -> str:
        password: str = self.cleaned_data["new_password1"]
        password_validation.validate_password(password)
        return password

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        first, second = cleaned.get("new_password1"), cleaned.get("new_password2")
        if first and second and first != second:
            self.add_error("new_password2", "The two passwords don't match.")
        return cleaned
