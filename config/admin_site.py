"""koolclips' admin site: Django's, with every registered admin's list pages
filtering only by what that admin declares (config/admin_lookups.py).

Installed as the default site (INSTALLED_APPS names `AdminConfig` instead of
django.contrib.admin), so `admin.site` is this site and the admins that other
apps register - users and groups, django-axes' lockouts - get the same rule.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig

from config.admin_lookups import StrictLookupsMixin


class KoolclipsAdminSite(admin.AdminSite):
    def register(self, model_or_iterable, admin_class=None, **options) -> None:
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, StrictLookupsMixin):
            admin_class = type(admin_class.__name__, (StrictLookupsMixin, admin_class), {})
        super().register(model_or_iterable, admin_class, **options)


class AdminConfig(DjangoAdminConfig):
    default_site = "config.admin_site.KoolclipsAdminSite"
