"""Dashboard pages for accounts and the organization context (login, passwords, switch).

Authentication and password flows are Django's own views with our templates and forms;
they are public (or login-only) pages, so they are not behind ``org_required``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from glassbox.encryption import decrypt_str, encrypt_str
from glassbox.pageforms import FormField, PageForm
from tenants import selectors, services
from tenants.forms import ApiKeyForm, InviteForm, LoginForm, NewAccountPasswordForm, RoleForm
from tenants.models import Membership, Role
from tenants.serializers import DataSettingsSerializer
from tenants.web import (
    SESSION_ORG_KEY,
    OrgRequest,
    form_add_service_errors,
    org_required,
    organization_switch,
    public_page,
)

login = public_page(
    auth_views.LoginView.as_view(
        template_name="accounts/login.html",
        authentication_form=LoginForm,
        redirect_authenticated_user=True,
    )
)
logout = public_page(auth_views.LogoutView.as_view(template_name="accounts/logged_out.html"))
password_change = public_page(
    auth_views.PasswordChangeView.as_view(
        template_name="accounts/password_change.html",
        success_url=reverse_lazy("tenants:password-change-done"),
    )
)
password_change_done = public_page(
    auth_views.PasswordChangeDoneView.as_view(template_name="accounts/password_change_done.html")
)
password_reset = public_page(
    auth_views.PasswordResetView.as_view(
        template_name="accounts/password_reset.html",
        email_template_name="accounts/password_reset_email.txt",
        subject_template_name="accounts/password_reset_subject.txt",
        success_url=reverse_lazy("tenants:password-reset-done"),
    )
)
password_reset_done = public_page(
    auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_done.html")
)
password_reset_confirm = public_page(
    auth_views.PasswordResetConfirmView.as_view(
        template_name="accounts/password_reset_confirm.html",
        success_url=reverse_lazy("tenants:password-reset-complete"),
    )
)
password_reset_complete = public_page(
    auth_views.PasswordResetCompleteView.as_view(
        template_name="accounts/password_reset_complete.html"
    )
)


@public_page  # login only: it is how a user picks the organization in the first place
@require_POST
@login_required
def organization_switch_view(request: HttpRequest) -> HttpResponse:
    """Switch the session's organization; only to one the user belongs to."""
    membership = organization_switch(request, organization_id=request.POST.get("organization"))
    if membership is None:
        messages.error(request, "You are not a member of that organization.")
    else:
        messages.success(request, f"Switched to {membership.organization.name}.")
    target = request.POST.get("next") or "/"
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "/"
    # Detail pages of the old organization would be 404s in the new one: go to the section.
    section = "/" + target.lstrip("/").split("/", 1)[0] + "/" if target.strip("/") else "/"
    return redirect(section)


MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"

# --- Members ------------------------------------------------------------------------------


def _member_rows(membership: Membership) -> list[dict[str, Any]]:
    members = list(selectors.member_list(organization=membership.organization))
    owners = sum(1 for m in members if m.role == Role.OWNER)
    return [
        {
            "membership": m,
            "role_form": RoleForm(
                initial={"role": m.role}, actor_role=membership.role, prefix=f"m{m.pk}"
            ),
            # What this viewer may do to this row; the services check it again.
            "manageable": membership.role == Role.OWNER
            or (Role(membership.role).at_least(Role.ADMIN) and m.role != Role.OWNER),
            "last_owner": m.role == Role.OWNER and owners <= 1,
        }
        for m in members
    ]


def _members_page(request: OrgRequest, invite_form: InviteForm, status: int = 200) -> HttpResponse:
    membership = request.membership
    context = {
        "rows": _member_rows(membership),
        "invitations": selectors.invitation_list_pending(organization=membership.organization),
        "form": invite_form,
    }
    return render(request, "tenants/members.html", context, status=status)


@org_required(min_role=Role.VIEWER, write_role=Role.ADMIN)
def member_list(request: OrgRequest) -> HttpResponse:
    """Everyone can see who is in the organization; admins invite (POST)."""
    membership = request.membership
    if request.method != "POST":
        return _members_page(request, InviteForm(actor_role=membership.role))
    form = InviteForm(request.POST, actor_role=membership.role)
    if form.is_valid():
        try:
            issued = services.invitation_create(
                organization=membership.organization,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=membership,
            )
        except ValidationError as exc:
            form_add_service_errors(form, exc)
        else:
            accept = reverse("tenants:invitation-accept", kwargs={"token": issued.raw_token})
            services.invitation_send(issued=issued, accept_url=request.build_absolute_uri(accept))
            messages.success(request, f"Invitation sent to {issued.invitation.email}.")
            return redirect("tenants:member-list")
    return _members_page(request, form, status=400)


@org_required(min_role=Role.ADMIN)
def member_role(request: OrgRequest, pk: int) -> HttpResponse:
    """Change a member's role: a page of its own, or (htmx) the members table's inline
    form, answered with the table fragment rendered from the same rows."""
    actor = request.membership
    target = selectors.access_membership(organization=actor.organization, membership_id=pk)
    prefix = f"m{target.pk}"
    form = RoleForm(initial={"role": target.role}, actor_role=actor.role, prefix=prefix)
    notice = ""
    if request.method == "POST":
        form = RoleForm(request.POST, actor_role=actor.role, prefix=prefix)
        if form.is_valid():
            try:
                services.membership_change_role(
                    membership=target, role=form.cleaned_data["role"], actor=actor
                )
            except ValidationError as exc:
                form_add_service_errors(form, exc)
            else:
                notice = f"{target.user.email} is now {target.get_role_display().lower()}."
                if not request.htmx:
                    messages.success(request, notice)
                    return redirect("tenants:member-list")
    status = 400 if form.errors else 200
    if request.htmx:
        errors = [e for errs in form.errors.values() for e in errs]
        if target.pk == actor.pk:  # your own new role decides what the table offers you
            actor = request.membership = target
        table = {"rows": _member_rows(actor), "notice": notice, "errors": errors}
        return render(request, "tenants/_members_table.html", table, status=status)
    context = {"form": form, "target": target}
    return render(request, "tenants/member_role.html", context, status=status)


@org_required(min_role=Role.ADMIN)
def member_remove(request: OrgRequest, pk: int) -> HttpResponse:
    actor = request.membership
    target = selectors.access_membership(organization=actor.organization, membership_id=pk)
    error = None
    if request.method == "POST":
        try:
            services.membership_remove(membership=target, actor=actor)
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            messages.success(request, f"Removed {target.user.email}.")
            # Removing yourself ends your access to this organization.
            return redirect("tenants:member-list" if target.pk != actor.pk else "/")
    context = {
        "title": f"Remove {target.user.email}?",
        "body": f"They will lose access to {actor.organization.name} at once. "
        "Their account stays, and you can invite them again later.",
        "button": "Remove member",
        "cancel_url": reverse("tenants:member-list"),
        "error": error,
    }
    return render(request, "tenants/confirm.html", context, status=400 if error else 200)


@org_required(min_role=Role.ADMIN)
def invitation_revoke(request: OrgRequest, pk: int) -> HttpResponse:
    actor = request.membership
    invitation = selectors.access_invitation(organization=actor.organization, invitation_id=pk)
    if request.method == "POST":
        services.invitation_revoke(invitation=invitation)
        messages.success(request, f"Cancelled the invitation to {invitation.email}.")
        return redirect("tenants:member-list")
    context = {
        "title": f"Cancel the invitation to {invitation.email}?",
        "body": "The link in their email will stop working.",
        "button": "Cancel invitation",
        "cancel_url": reverse("tenants:member-list"),
    }
    return render(request, "tenants/confirm.html", context)


@public_page  # the token is the credential: the visitor may have no account yet
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    invitation = selectors.invitation_get_by_token(raw_token=token)
    if invitation is None or not invitation.is_pending:
        return render(request, "tenants/invitation_invalid.html", status=404)
    user_model = get_user_model()
    has_account = user_model.objects.filter(email__iexact=invitation.email).exists()
    user = request.user
    context: dict[str, Any] = {"invitation": invitation, "has_account": has_account}
    if user.is_authenticated:
        if (getattr(user, "email", "") or "").lower() != invitation.email.lower():
            return render(request, "tenants/invitation_wrong_user.html", context, status=403)
        if request.method == "POST":
            try:
                membership = services.invitation_accept(invitation=invitation, user=user)
            except ValidationError:  # used or cancelled since the page was shown
                return render(request, "tenants/invitation_invalid.html", status=404)
            return _joined(request, membership)
        return render(request, "tenants/invitation.html", context)
    if has_account:
        # Log in first; the login page brings them back here.
        context["login_url"] = f"{reverse('tenants:login')}?next={request.path}"
        return render(request, "tenants/invitation.html", context)
    form = NewAccountPasswordForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.invitation_accept(
                invitation=invitation, password=form.cleaned_data["new_password1"]
            )
        except ValidationError as exc:
            form_add_service_errors(form, exc)
        else:
            # A fresh account has just chosen its password: log it in (model backend).
            auth_login(
                request, membership.user, backend="django.contrib.auth.backends.ModelBackend"
            )
            return _joined(request, membership)
    context["form"] = form
    return render(request, "tenants/invitation.html", context, status=400 if form.errors else 200)


def _joined(request: HttpRequest, membership: Membership) -> HttpResponse:
    request.session[SESSION_ORG_KEY] = membership.organization_id
    messages.success(request, f"Welcome to {membership.organization.name}.")
    return redirect(settings.LOGIN_REDIRECT_URL)


# --- API keys -----------------------------------------------------------------------------


NEW_KEY_SESSION = "dashboard_new_api_key"


@org_required(min_role=Role.ADMIN)
def api_key_list(request: OrgRequest) -> HttpResponse:
    """List and create keys.

    A created key is shown on the page the POST redirects to, once: it waits in the
    session encrypted (the same rotatable keys as tenant secrets) and is popped by that
    GET, so a reload neither shows it again nor creates a second key.
    """
    membership = request.membership
    organization = membership.organization
    form = ApiKeyForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        issued = services.api_key_create(
            organization=organization,
            name=form.cleaned_data["name"],
            scope=form.cleaned_data["scope"],
            created_by=membership.user,
        )
        request.session[NEW_KEY_SESSION] = {
            "id": issued.api_key.pk,
            "organization": organization.pk,
            "key": encrypt_str(issued.raw_key),
        }
        return redirect("tenants:api-key-list")
    new_key = None
    pending = request.session.pop(NEW_KEY_SESSION, None) if request.method == "GET" else None
    if isinstance(pending, dict) and pending.get("organization") == organization.pk:
        new_key = decrypt_str(str(pending.get("key", "")))
    context = {
        "keys": selectors.api_key_list(organization=organization).select_related("created_by"),
        "form": form,
        "new_key": new_key,
    }
    response = render(request, "tenants/api_keys.html", context, status=400 if form.errors else 200)
    response["Cache-Control"] = "no-store"
    return response


@org_required(min_role=Role.ADMIN)
def api_key_revoke(request: OrgRequest, pk: int) -> HttpResponse:
    membership = request.membership
    api_key = selectors.access_api_key(organization=membership.organization, api_key_id=pk)
    if request.method == "POST":
        services.api_key_revoke(api_key=api_key)
        messages.success(request, f"Revoked {api_key.masked}.")
        return redirect("tenants:api-key-list")
    context = {
        "title": f"Revoke {api_key.name or 'the API key'} ({api_key.masked})?",
        "body": "Requests using it will be refused at once. This can't be undone.",
        "button": "Revoke key",
        "cancel_url": reverse("tenants:api-key-list"),
    }
    return render(request, "tenants/confirm.html", context)


# --- data settings and the audit log ------------------------------------------------------

_DATA_FIELDS = [
    FormField(
        "transcript_retention_days",
        "Keep transcripts for (days)",
        "Transcripts and tool calls of older calls are deleted. Blank: keep them.",
    ),
    FormField(
        "recording_retention_days",
        "Keep recordings for (days)",
        "Recordings of older calls are deleted. Blank: keep them.",
    ),
    FormField(
        "redact_transcripts",
        "Redact transcripts",
        "Emails, card numbers and phone numbers become [email], [card] and [phone] before a "
        "transcript is stored.",
    ),
]


class DataSettingsForm(PageForm):
    def api_data(self) -> dict[str, Any]:
        assert self.data is not None
        blank = [
            p
            for p in ("transcript_retention_days", "recording_retention_days")
            if self.data.get(p, "").strip() == ""
        ]
        data = self.data.copy()
        for path in blank:  # blank means "keep forever": null in the API
            data.pop(path, None)
        self.data = data
        out = super().api_data()
        return {**out, **dict.fromkeys(blank)}


@org_required(min_role=Role.ADMIN)
def data_settings(request: OrgRequest) -> HttpResponse:
    organization = request.organization
    form = DataSettingsForm(
        serializer_class=DataSettingsSerializer,
        fields=_DATA_FIELDS,
        context={"organization": organization},
        initial=DataSettingsSerializer(organization).data,
        data=request.POST if request.method == "POST" else None,
    )
    if request.method == "POST":
        saved = form.save(
            lambda data: services.organization_data_settings_update(
                organization=organization, actor=services.Actor(user=request.user), data=data
            )
        )
        if saved is not None:
            messages.success(request, "Data settings saved.")
            return redirect("tenants:data-settings")
    status = 400 if form.errors else 200
    return render(request, "tenants/data_settings.html", {"form": form}, status=status)


AUDIT_PER_PAGE = 50


@org_required(min_role=Role.ADMIN)
def audit_log(request: OrgRequest) -> HttpResponse:
    entries = selectors.audit_log_list(organization=request.organization)
    page = Paginator(entries, AUDIT_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "tenants/audit_log.html", {"page_obj": page})
