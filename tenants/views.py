"""Dashboard pages for accounts and the organization context (login, passwords, switch).

Authentication and password flows are Django's own views with our templates and forms;
they are public (or login-only) pages, so they are not behind ``org_required``.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from tenants.forms import LoginForm
from tenants.web import organization_switch, public_page

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
