from django.contrib import admin

from calls.models import PhoneNumber
from tenants.admin import TenantModelAdmin


@admin.register(PhoneNumber)
class PhoneNumberAdmin(TenantModelAdmin):
    list_display = ("number", "name", "carrier", "agent", "organization", "created")
    list_filter = ("carrier",)
    search_fields = ("number", "name", "organization__name")
    raw_id_fields = ("organization", "agent", "credential")
