"""Dashboard pages of the tenants app: accounts, organization switch, members, API keys."""

from django.urls import path

from tenants import views

app_name = "tenants"

urlpatterns = [
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    path("account/password/", views.password_change, name="password-change"),
    path("account/password/done/", views.password_change_done, name="password-change-done"),
    path("password-reset/", views.password_reset, name="password-reset"),
    path("password-reset/sent/", views.password_reset_done, name="password-reset-done"),
    path(
        "password-reset/<uidb64>/<token>/",
        views.password_reset_confirm,
        name="password-reset-confirm",
    ),
    path("password-reset/done/", views.password_reset_complete, name="password-reset-complete"),
    path("organizations/switch/", views.organization_switch_view, name="organization-switch"),
    path("members/", views.member_list, name="member-list"),
    path("members/<int:pk>/role/", views.member_role, name="member-role"),
    path("members/<int:pk>/remove/", views.member_remove, name="member-remove"),
    path(
        "members/invitations/<int:pk>/cancel/",
        views.invitation_revoke,
        name="invitation-revoke",
    ),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation-accept"),
    path("api-keys/", views.api_key_list, name="api-key-list"),
    path("api-keys/<int:pk>/revoke/", views.api_key_revoke, name="api-key-revoke"),
    path("settings/data/", views.data_settings, name="data-settings"),
    path("audit-log/", views.audit_log, name="audit-log"),
]
