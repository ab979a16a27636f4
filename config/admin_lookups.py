"""The admin's list pages filter only by what each admin declares, with values that fit.

Django's admin lets a list page's query string filter by any lookup on the
model's own fields: `?title__regex=[` reached the database (OperationalError,
a 500; on SQLite a regular expression runs in Python inside the web process),
`?would_delete_sample__contains=x` met an unsupported JSON lookup, and a huge
`?started_at__year=` overflowed Python's datetime. `StrictLookupsMixin` (applied
to every registered admin by config/admin_site.py) allows only:

- the parameters of the list page itself (search, ordering, page, facets, ...);
- the parameters of the filters the admin declares (`list_filter`) and of its
  date hierarchy.

Anything else is refused with 400 (Django's DisallowedModelAdminLookup). A
declared filter whose value cannot be what the field holds (a year past 9998,
a 30-digit id, a month without a year) gets the admin's usual "invalid lookup"
answer: a redirect to the list with `?e=1`. Control characters (NUL breaks
PostgreSQL) are refused with 400 anywhere in the query string.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.contrib.admin import FieldListFilter, SimpleListFilter
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.admin.views.main import ERROR_FLAG, IGNORED_PARAMS, PAGE_VAR
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest

# The list page's own parameters (not lookups).
PAGE_PARAMS = frozenset({*IGNORED_PARAMS, PAGE_VAR, ERROR_FLAG})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INT64 = (-(2**63), 2**63 - 1)
_DIGITS = re.compile(r"[0-9]{1,4}")


def declared_lookups(model_admin, request: HttpRequest | None) -> frozenset[str]:
    """Every query parameter the admin's declared filters and date hierarchy read
    (once per request: a related field's filter queries its choices)."""
    cache = getattr(request, "_declared_lookups", None) if request is not None else None
    if cache is not None and type(model_admin) in cache:
        return cache[type(model_admin)]
    names = _declared(model_admin, request)
    if request is not None:
        request._declared_lookups = {**(cache or {}), type(model_admin): names}
    return names


def _declared(model_admin, request: HttpRequest | None) -> frozenset[str]:
    names: set[str] = set()
    filters = model_admin.get_list_filter(request) if request else model_admin.list_filter
    for item in filters:
        if isinstance(item, type) and issubclass(item, SimpleListFilter):
            names.add(item.parameter_name)
            continue
        if isinstance(item, (list, tuple)):
            path, filter_class = item
        else:
            path, filter_class = item, FieldListFilter.create
        if isinstance(path, models.Field):
            field, path = path, path.name
        else:
            field = get_fields_from_path(model_admin.model, path)[-1]
        spec = filter_class(field, request, {}, model_admin.model, model_admin, field_path=path)
        names.update(spec.expected_parameters())
    hierarchy = model_admin.date_hierarchy
    if hierarchy:
        names.update(f"{hierarchy}__{part}" for part in ("year", "month", "day"))
    return frozenset(names)


def check_changelist_query(model_admin, request: HttpRequest) -> None:
    """Raise DisallowedModelAdminLookup (400) for a parameter no filter declares or
    a control character; IncorrectLookupParameters (the "invalid lookup" page) for
    a declared filter's value that cannot fit its field."""
    allowed = declared_lookups(model_admin, request)
    for key, values in request.GET.lists():
        if _CONTROL.search(key) or any(_CONTROL.search(v) for v in values):
            raise DisallowedModelAdminLookup(f"control characters in the query ({key!r})")
        if key in PAGE_PARAMS:
            continue
        if key not in allowed:
            raise DisallowedModelAdminLookup(f"filtering by {key!r} is not allowed")
        for value in values:
            _check_value(model_admin.model, key, value)
    if model_admin.date_hierarchy:
        _check_date_hierarchy(model_admin.date_hierarchy, request)


def _check_value(model, key: str, value: str) -> None:
    """Integer fields take integers that fit 64 bits (SQLite raises OverflowError
    past that, outside the filters' own error handling)."""
    path, _, lookup = key.rpartition(LOOKUP_SEP)
    if not path or lookup in ("isnull", "year", "month", "day"):
        return
    try:
        field = get_fields_from_path(model, path)[-1]
    except (FieldDoesNotExist, ValueError):
        return  # a SimpleListFilter's own parameter: it parses its value itself
    target = getattr(field, "target_field", None) or field
    if isinstance(target, (models.IntegerField, models.AutoField)):
        for item in value.split(",") if lookup == "in" else [value]:
            try:
                number = int(item)
            except ValueError:
                raise IncorrectLookupParameters(f"{key}: not a whole number") from None
            if not _INT64[0] <= number <= _INT64[1]:
                raise IncorrectLookupParameters(f"{key}: out of range")


def _check_date_hierarchy(field: str, request: HttpRequest) -> None:
    """The same dates Django's ChangeList computes, checked before it does: there
    an OverflowError (a huge number) or a range past year 9999 is a 500."""
    year, month, day = (request.GET.get(f"{field}__{p}") for p in ("year", "month", "day"))
    if year is None:
        if month is not None or day is not None:
            raise IncorrectLookupParameters("a month or day without a year")
        return
    if day is not None and month is None:
        raise IncorrectLookupParameters("a day without a month")
    parts = [p for p in (year, month, day) if p is not None]
    if not all(_DIGITS.fullmatch(p) for p in parts):
        raise IncorrectLookupParameters("the date's parts must be small whole numbers")
    try:
        hierarchy_range(int(year), int(month) if month else None, int(day) if day else None)
    except (ValueError, OverflowError) as exc:
        raise IncorrectLookupParameters(str(exc)) from None


def hierarchy_range(year: int, month: int | None, day: int | None) -> tuple[datetime, datetime]:
    """[start, end) of a date hierarchy selection, as Django's ChangeList derives it."""
    start = datetime(year, month or 1, day or 1)
    if day is not None:
        return start, start + timedelta(days=1)
    if month is not None:
        return start, (start + timedelta(days=32)).replace(day=1)
    return start, start.replace(year=start.year + 1)


class StrictLookupsMixin:
    """For a ModelAdmin: list pages take only declared filters (see the module)."""

    def get_changelist_instance(self, request):
        check_changelist_query(self, request)
        return super().get_changelist_instance(request)

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        # Also here: Django asks it for every filter parameter it is given.
        return lookup in declared_lookups(self, request) and super().lookup_allowed(
            lookup, value, request
        )
