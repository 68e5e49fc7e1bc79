"""Native marketing-automation payloads → generic lead bodies (the `LeadIn` shape). Pure: no I/O.

Each adapter has a `name`, the media types it takes (`content_types`, lower case, no parameters), `parse`
(text → Python objects, through `payload.parse_json` / `payload.parse_form`) and `batch`, which turns the
parsed payload into a `Batch` of `Item`s:

- `Item.lead`: a full generic body to validate with `LeadIn` (`validate_leads` does it, naming fields with
  the item's `where` prefix, e.g. `[1].company.country`);
- `Item.patch`: a partial generic body for a lead already known by `external_id` (HubSpot
  `contact.propertyChange`): only the fields that changed, already coerced; an emptied property is left out;
- neither: an event that carries no lead (HubSpot `contact.creation`, Mautic `email_on_open`, …): the
  endpoint answers it as ignored.

`Batch.multi` is True when the payload is a batch (an array, a Mautic body): the endpoint answers
`{"leads": [...]}` then. A payload of the wrong shape is `BadPayload` (400; for the generic adapter an
array, string, number or boolean stays the 422 on `body` it has always been); a value that cannot be
coerced (an unknown country, "abc" as a score) is `ValidationFailed` (422) listing every such field of
every item at once.

Rules shared by the adapters:

- `field_map`: lead field (dotted target, e.g. `company.country`) → dotted path into the native *item*
  (split on "." only, so Marketo names with spaces work; a numeric segment indexes an array). Paths are
  relative to: the body (generic, form), the contact record or the array element (HubSpot, Marketo), the
  event object (Mautic: `contact.fields.core.<alias>.value`, `submission.results.<field>`). A mapped
  value replaces the adapter's default for that field; a path that is absent means null.
- Values: strings stripped, empty strings are null (and left out); numbers sent as strings coerced
  (`score`, `company.employees`, `estimated_value`); `company.employees` ranges take their lower bound
  ("25-50" → 25, "1000+" → 1000); `occurred_at` from ISO 8601, `YYYY-MM-DD HH:MM:SS` (UTC) or epoch
  seconds/milliseconds; `company.country` normalized to ISO alpha-2 (unknown → 422); `company.region`
  upper case, a subdivision name of that country becoming its code ("California" → "CA").
- Vendor scores (HubSpot `hubspotscore`, Mautic points) are clamped to 0..1000: Mautic points go negative.
- `default_campaign` fills `campaign` when the payload has none.
- The generic adapter passes the body through untouched (no copy) unless a field_map or default campaign
  is configured or the country needs normalizing.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import ValidationError

from services.lead_router.intake.schemas import LeadIn, LeadPatch
from services.lead_router.source.country import ALPHA2, normalize_country, normalize_region
from services.lead_router.source.payload import BadPayload, parse_form, parse_json
from shared.errors import ValidationFailed, field_errors

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

STRING_FIELDS = frozenset({"external_id", "email", "first_name", "last_name", "phone", "title", "product",
                           "campaign", "company.name", "company.domain", "company.industry",
                           "company.postal_code", "company.region"})
INT_FIELDS = frozenset({"score", "company.employees"})
FLOAT_FIELDS = frozenset({"estimated_value"})
TARGETS = STRING_FIELDS | INT_FIELDS | FLOAT_FIELDS | {"company.country", "occurred_at"}

_MISSING: Any = object()
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")
_RANGE = re.compile(r"(\d+)\s*(?:\+|-\s*\d+|–\s*\d+)")
_MAX_INT = 10**15


@dataclass(frozen=True, slots=True)
class Item:
    where: str                          # "" for a single payload, "[2]", "mautic.lead_post_save_new[0]"
    kind: str                           # "lead", "contact", "contact.creation", "mautic.form_on_submit", …
    lead: dict[str, Any] | None = None  # a full generic body, to validate with LeadIn
    patch: dict[str, Any] | None = None  # changed fields of the lead known by external_id
    external_id: str | None = None
    occurred_at: str | None = None      # the event's own time, when the vendor gives one (ISO 8601)


@dataclass(frozen=True, slots=True)
class Batch:
    items: list[Item]
    multi: bool


class Adapter(Protocol):
    name: str
    content_types: tuple[str, ...]

    def parse(self, text: str, media_type: str) -> Any: ...

    def batch(self, payload: Any, *, field_map: Mapping[str, str], default_campaign: str | None,
              fallback_id: str | None) -> Batch: ...


def media_type(content_type: str | None) -> str:
    """`Application/JSON; charset=utf-8` → `application/json`."""
    return (content_type or "").partition(";")[0].strip().lower()


def accepts(adapter: Adapter, content_type: str | None) -> bool:
    """Whether the adapter takes this Content-Type. JSON adapters take `+json` types too; a request without
    a Content-Type is taken by none (415)."""
    kind = media_type(content_type)
    if kind in adapter.content_types:
        return True
    return JSON in adapter.content_types and kind.endswith("+json")


# Paths and values -----------------------------------------------------------------------------------------

class _Bad(Exception):
    def __init__(self, message: str, type_: str) -> None:
        super().__init__(message)
        self.message, self.type = message, type_


def get_path(obj: Any, path: str) -> Any:
    """The value at a dotted path (numeric segments index arrays), or `_MISSING`."""
    node = obj
    for segment in path.split("."):
        if isinstance(node, dict):
            node = node.get(segment, _MISSING)
            if node is _MISSING:
                return _MISSING
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return _MISSING
    return node


def _present(value: Any) -> bool:
    if value is None or value is _MISSING or isinstance(value, dict | list):
        return False
    return not (isinstance(value, str) and not value.strip())


def _first(obj: Any, paths: Iterable[str]) -> Any:
    for path in paths:
        value = get_path(obj, path)
        if _present(value):
            return value
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad("must be text", "string_type")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        raise _Bad("must be a number", "number_type")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "").replace("_", "").replace(" ", "")
        if not text:
            return None
        if len(text) > 40 or not _NUMBER.fullmatch(text):
            raise _Bad("must be a number", "number_parsing")
        number = float(text)
    else:
        raise _Bad("must be a number", "number_type")
    if not math.isfinite(number) or abs(number) > _MAX_INT:
        raise _Bad("is out of range", "number_range")
    return number


def _int(value: Any, *, ranges: bool = False) -> int | None:
    if ranges and isinstance(value, str):
        match = _RANGE.fullmatch(value.strip())
        if match:
            return int(match.group(1))
    number = _number(value)
    return None if number is None else int(round(number))


def _datetime(value: Any) -> str | None:
    """ISO 8601 (naive → UTC), `YYYY-MM-DD HH:MM:SS` (UTC), or epoch seconds / milliseconds."""
    if isinstance(value, bool):
        raise _Bad("must be a date-time", "datetime_type")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if not text.isdigit():
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise _Bad("must be an ISO 8601 date-time", "datetime_parsing") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.isoformat()
        if len(text) > 16:
            raise _Bad("is out of range", "datetime_range")
        value = int(text)
    if not isinstance(value, int | float):
        raise _Bad("must be a date-time", "datetime_type")
    seconds = value / 1000 if abs(value) >= 100_000_000_000 else value  # ms from 1973 on, else seconds
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        raise _Bad("is out of range", "datetime_range") from None


def _country(value: Any) -> str | None:
    if isinstance(value, str):
        if not value.strip():
            return None
        code = normalize_country(value)
        if code is None:
            raise _Bad(f"unknown country {value.strip()[:60]!r}; use an ISO 3166 code or an English name",
                       "country_unknown")
        return code
    raise _Bad("must be a country name or code", "string_type")


def _domain(value: Any) -> Any:
    """A website URL → its host without `www.` ("https://www.example.com/x" → "example.com")."""
    if not isinstance(value, str) or not value.strip():
        return value
    text = value.strip()
    try:
        host = urlsplit(text if "://" in text else f"//{text}").hostname
    except ValueError:
        return text
    if not host:
        return text
    return host[4:] if host.startswith("www.") else host


def coerce(target: str, value: Any) -> Any:
    """A native value as the generic field wants it; None for null/empty. Raises `_Bad`."""
    if value is None or value is _MISSING:
        return None
    if target == "company.country":
        return _country(value)
    if target in STRING_FIELDS:
        return _text(value)
    if target == "company.employees":
        return _int(value, ranges=True)
    if target in INT_FIELDS:
        return _int(value)
    if target in FLOAT_FIELDS:
        return _number(value)
    if target == "occurred_at":
        return _datetime(value)
    return value.strip() or None if isinstance(value, str) else value


def _set(lead: dict[str, Any], target: str, value: Any) -> None:
    head, dot, tail = target.partition(".")
    if not dot:
        lead[head] = value
        return
    child = lead.get(head)
    if not isinstance(child, dict):
        child = lead[head] = {}
    child[tail] = value


def _unset(lead: dict[str, Any], target: str) -> None:
    head, dot, tail = target.partition(".")
    if not dot:
        lead.pop(head, None)
    elif isinstance(lead.get(head), dict):
        lead[head].pop(tail, None)


def _field(where: str, target: str) -> str:
    return f"{where}.{target}" if where else target


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, where: str, target: str, bad: _Bad) -> None:
        self.items.append({"field": _field(where, target), "message": bad.message, "type": bad.type})

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationFailed("The payload has values that cannot be used; see errors.", errors=self.items)


def _build(raw: Mapping[str, Any], *, where: str, errors: _Errors, default_campaign: str | None,
           clamp_score: bool = False) -> dict[str, Any]:
    """A generic lead from target → raw native value: coerced, nulls left out, region after country."""
    lead: dict[str, Any] = {}
    for target, value in raw.items():
        if target == "company.region":
            continue  # below, once the country is known
        try:
            coerced = coerce(target, value)
        except _Bad as bad:
            errors.add(where, target, bad)
            continue
        if coerced is None:
            continue
        if target == "score" and clamp_score:
            coerced = min(max(coerced, 0), 1000)
        _set(lead, target, coerced)
    region: str | None = None
    try:
        region = coerce("company.region", raw.get("company.region"))
    except _Bad as bad:
        errors.add(where, "company.region", bad)
    if region:
        country = lead.get("company", {}).get("country")
        _set(lead, "company.region", normalize_region(region, country))
    if default_campaign and "campaign" not in lead:
        lead["campaign"] = default_campaign
    return lead


def _mapped(raw: dict[str, Any], item: Any, field_map: Mapping[str, str]) -> dict[str, Any]:
    for target, path in field_map.items():
        raw[target] = get_path(item, path)
    return raw


def _external_id(lead: Mapping[str, Any] | None) -> str | None:
    value = lead.get("external_id") if lead else None
    return value.strip() or None if isinstance(value, str) else None


def _require_object(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise BadPayload(f"Expected a JSON object ({what}), not {_kind(payload)}.")
    return payload


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number")


# generic --------------------------------------------------------------------------------------------------

class _JsonAdapter:
    """What every JSON adapter shares: the media type and strict parsing (`payload.parse_json`)."""

    content_types: tuple[str, ...] = (JSON,)

    def parse(self, text: str, media_type: str) -> Any:
        return parse_json(text)


class GenericAdapter(_JsonAdapter):
    """The documented generic body itself."""

    name = "generic"
    def batch(self, payload: Any, *, field_map: Mapping[str, str], default_campaign: str | None,
              fallback_id: str | None) -> Batch:
        if payload is None:
            raise BadPayload("Expected a JSON object (the generic lead), not null.")
        if not isinstance(payload, dict):  # 422 on `body`, as the generic intake has always answered
            raise ValidationFailed("The lead is not valid; see errors.", errors=[{
                "field": "body", "message": f"Input should be an object, not {_kind(payload)}", "type": "model_type"}])
        body = payload
        errors = _Errors()
        if field_map or default_campaign:
            body = self._apply(body, field_map, default_campaign, errors)
        body = self._country(body, errors)
        errors.raise_if_any()
        return Batch([Item(where="", kind="lead", lead=body, external_id=_external_id(body))], multi=False)

    @staticmethod
    def _apply(body: dict[str, Any], field_map: Mapping[str, str], default_campaign: str | None,
               errors: _Errors) -> dict[str, Any]:
        lead = dict(body)
        if isinstance(lead.get("company"), dict):
            lead["company"] = dict(lead["company"])
        for target, path in field_map.items():
            try:
                value = coerce(target, get_path(body, path))
            except _Bad as bad:
                errors.add("", target, bad)
                continue
            if value is None:
                _unset(lead, target)
            elif "." in target and "company" in lead and not isinstance(lead["company"], dict):
                errors.add("", "company", _Bad("must be an object", "model_type"))
            else:
                _set(lead, target, value)
        if default_campaign and not _present(lead.get("campaign")):
            lead["campaign"] = default_campaign
        return lead

    @staticmethod
    def _country(body: dict[str, Any], errors: _Errors) -> dict[str, Any]:
        company = body.get("company")
        if not isinstance(company, dict):
            return body
        country = company.get("country")
        if not isinstance(country, str) or (len(country) == 2 and country in ALPHA2):
            return body  # the fast path; a missing or non-text country is LeadIn's to report
        try:
            code = _country(country)
        except _Bad as bad:
            errors.add("", "company.country", bad)
            return body
        if code is None or code == country:
            return body
        return {**body, "company": {**company, "country": code}}


# HubSpot --------------------------------------------------------------------------------------------------

# target → HubSpot contact properties, first non-empty wins. The first one is also the property whose
# `contact.propertyChange` patches the target.
HUBSPOT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "first_name": ("firstname",),
    "last_name": ("lastname",),
    "phone": ("phone", "mobilephone"),
    "title": ("jobtitle",),
    "company.name": ("company",),
    "company.domain": ("website", "domain"),
    "company.industry": ("industry",),
    "company.employees": ("numemployees", "numberofemployees"),
    "company.country": ("country",),
    "company.region": ("state",),
    "company.postal_code": ("zip",),
    "score": ("hubspotscore",),
}
_HUBSPOT_PATH = re.compile(r"properties\.([^.]+)(?:\.value)?")
_CONTACT_TYPES = {"contact.creation": "creation", "contact.propertyChange": "propertyChange",
                  "object.creation": "creation", "object.propertyChange": "propertyChange"}


def _hubspot_property(properties: Mapping[str, Any], name: str) -> Any:
    value = properties.get(name)
    if isinstance(value, dict):  # the contact record format: {"value": "...", "versions": [...]}
        return value.get("value")
    return value  # the CRM v3 format: flat values


def _one_or_many(payload: Any, what: str, item: Callable[[dict[str, Any], str, _Errors], Item]) -> Batch:
    """One object (one item) or an array of objects (several, `where` = `[i]`), every error of every item
    collected into one 422."""
    errors = _Errors()
    if isinstance(payload, dict):
        one = item(payload, "", errors)
        errors.raise_if_any()
        return Batch([one], multi=False)
    if not isinstance(payload, list):
        raise BadPayload(f"Expected {what}, not {_kind(payload)}.")
    if not payload:
        raise BadPayload("The array is empty.")
    items = []
    for i, element in enumerate(payload):
        where = f"[{i}]"
        if not isinstance(element, dict):
            raise BadPayload(f"{where}: expected an object, not {_kind(element)}.")
        items.append(item(element, where, errors))
    errors.raise_if_any()
    return Batch(items, multi=True)


class HubSpotAdapter(_JsonAdapter):
    """Workflow "Send a webhook" contact records (one, or an array) and webhook subscription event arrays."""

    name = "hubspot"
    def batch(self, payload: Any, *, field_map: Mapping[str, str], default_campaign: str | None,
              fallback_id: str | None) -> Batch:
        patch_targets = self._patch_targets(field_map)

        def item(element: dict[str, Any], where: str, errors: _Errors) -> Item:
            if where and "subscriptionType" in element:
                return self._event(element, where, patch_targets, errors)
            return self._record(element, where, field_map, default_campaign, errors)

        return _one_or_many(payload, "a HubSpot contact object or an array of events", item)

    @staticmethod
    def _record(record: dict[str, Any], where: str, field_map: Mapping[str, str], default_campaign: str | None,
                errors: _Errors) -> Item:
        properties = record.get("properties", {})
        if not isinstance(properties, dict):
            raise BadPayload(f"{_field(where, 'properties')}: expected an object, not {_kind(properties)}.")
        raw: dict[str, Any] = {}
        for target, names in HUBSPOT_PROPERTIES.items():
            raw[target] = next((v for v in (_hubspot_property(properties, n) for n in names) if _present(v)), None)
        raw["company.domain"] = _domain(raw["company.domain"])
        external_id = _first(record, ("vid", "canonical-vid", "id", "objectId"))
        raw["external_id"] = _hubspot_property(properties, "hs_object_id") if external_id is None else external_id
        lead = _build(_mapped(raw, record, field_map), where=where, errors=errors,
                      default_campaign=default_campaign, clamp_score=True)
        return Item(where=where, kind="contact", lead=lead, external_id=_external_id(lead))

    @staticmethod
    def _patch_targets(field_map: Mapping[str, str]) -> dict[str, str]:
        """HubSpot property name → lead field, for `propertyChange` events: the defaults, minus the fields
        the field_map takes from elsewhere, plus the field_map's `properties.<name>[.value]` paths."""
        targets = {names[0]: target for target, names in HUBSPOT_PROPERTIES.items() if target not in field_map}
        for target, path in field_map.items():
            match = _HUBSPOT_PATH.fullmatch(path)
            if match:
                targets[match.group(1)] = target
        return targets

    @staticmethod
    def _event(event: dict[str, Any], where: str, patch_targets: Mapping[str, str], errors: _Errors) -> Item:
        kind = event.get("subscriptionType")
        kind = kind if isinstance(kind, str) else "unknown"
        occurred_at: str | None = None
        try:
            occurred_at = _datetime(event.get("occurredAt"))
        except _Bad as bad:
            errors.add(where, "occurredAt", bad)
        object_id = event.get("objectId")
        external_id = str(object_id) if isinstance(object_id, int | str) and not isinstance(object_id, bool) \
            and str(object_id).strip() else None
        action = _CONTACT_TYPES.get(kind)
        if kind.startswith("object.") and event.get("objectTypeId") != "0-1":
            action = None  # a generic object event about something other than a contact
        if action is None:
            return Item(where=where, kind=kind, external_id=external_id, occurred_at=occurred_at)
        if external_id is None:
            errors.add(where, "objectId", _Bad("a contact event needs the contact's objectId", "missing"))
            return Item(where=where, kind=kind, occurred_at=occurred_at)
        if action == "creation":  # no properties in the event: nothing to build a lead from
            return Item(where=where, kind=kind, external_id=external_id, occurred_at=occurred_at)
        name = event.get("propertyName")
        target = patch_targets.get(name) if isinstance(name, str) else None
        patch: dict[str, Any] | None = None
        if target is not None:
            value = event.get("propertyValue")
            if target == "company.domain":
                value = _domain(value)
            try:
                coerced = coerce(target, value)
            except _Bad as bad:
                errors.add(where, target, bad)
                coerced = None
            if coerced is not None:
                if target == "score":
                    coerced = min(max(coerced, 0), 1000)
                elif target == "company.region":
                    coerced = normalize_region(coerced, None)
                patch = {}
                _set(patch, target, coerced)
        return Item(where=where, kind=kind, patch=patch, external_id=external_id, occurred_at=occurred_at)


# Mautic ---------------------------------------------------------------------------------------------------

MAUTIC_CONTACT_EVENTS = ("mautic.lead_post_save_new", "mautic.lead_post_save_update", "mautic.lead_points_change")
MAUTIC_FORM_EVENT = "mautic.form_on_submit"
# target → Mautic contact field aliases (and, for form submissions, form result names), first non-empty wins.
# Mautic's `title` is the salutation ("Mr."): the job title is `position`.
MAUTIC_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "first_name": ("firstname",),
    "last_name": ("lastname",),
    "phone": ("phone", "mobile"),
    "title": ("position",),
    "company.name": ("company",),
    "company.domain": ("website",),
    "company.industry": ("industry",),
    "company.country": ("country",),
    "company.region": ("state",),
    "company.postal_code": ("zipcode",),
}


def _mautic_fields(contact: Mapping[str, Any]) -> dict[str, Any]:
    """alias → value over every field group (`fields` is `[]` when a contact has none); `core` wins."""
    fields = contact.get("fields")
    if not isinstance(fields, dict):
        return {}
    flat: dict[str, Any] = {}
    groups = [g for name, g in fields.items() if name != "core"] + [fields.get("core")]
    for group in groups:
        if isinstance(group, dict):
            for alias, field in group.items():
                flat[alias] = field.get("value") if isinstance(field, dict) else field
    return flat


class MauticAdapter(_JsonAdapter):
    """Mautic webhook bodies: `{"<event type>": [event, …], …, "timestamp": "…"}`."""

    name = "mautic"
    def batch(self, payload: Any, *, field_map: Mapping[str, str], default_campaign: str | None,
              fallback_id: str | None) -> Batch:
        body = _require_object(payload, "a Mautic webhook body keyed by event type")
        errors = _Errors()
        items: list[Item] = []
        event_lists = 0
        for kind, events in body.items():
            if not isinstance(events, list):
                continue  # the top-level `timestamp`, and anything else that is not an event list
            event_lists += 1
            for i, event in enumerate(events):
                where = f"{kind}[{i}]"
                if not isinstance(event, dict):
                    raise BadPayload(f"{where}: expected an object, not {_kind(event)}.")
                items.append(self._event(kind, event, where, field_map, default_campaign, errors))
        if not event_lists:
            raise BadPayload("The body has no Mautic events (expected e.g. `mautic.lead_post_save_new`: [...]).")
        errors.raise_if_any()
        return Batch(items, multi=True)

    @staticmethod
    def _event(kind: str, event: dict[str, Any], where: str, field_map: Mapping[str, str],
               default_campaign: str | None, errors: _Errors) -> Item:
        results: Mapping[str, Any] = {}
        if kind in MAUTIC_CONTACT_EVENTS:
            contact = event.get("contact", event.get("lead"))  # `lead` in payloads of Mautic 2
            contact_path = "contact"
        elif kind == MAUTIC_FORM_EVENT:
            submission = event.get("submission")
            if not isinstance(submission, dict):
                raise BadPayload(f"{_field(where, 'submission')}: expected an object, not {_kind(submission)}.")
            contact = submission.get("lead")
            contact_path = "submission.lead"
            if isinstance(submission.get("results"), dict):
                results = submission["results"]
        else:
            return Item(where=where, kind=kind)  # email opens, page hits, …: no lead
        if not isinstance(contact, dict):
            raise BadPayload(f"{_field(where, contact_path)}: expected an object, not {_kind(contact)}.")
        fields = _mautic_fields(contact)
        raw: dict[str, Any] = {}
        for target, aliases in MAUTIC_FIELDS.items():
            value = _first(fields, aliases)
            if value is None and results:
                value = _first(results, aliases + (target.rpartition(".")[2],))
            raw[target] = value
        raw["company.domain"] = _domain(raw["company.domain"])
        raw["external_id"] = contact.get("id")
        points = get_path(event, "points.new_points") if kind == "mautic.lead_points_change" else _MISSING
        if not _present(points):
            points = contact.get("points")
        raw["score"] = points if _present(points) else fields.get("points")
        raw["occurred_at"] = event.get("timestamp")
        lead = _build(_mapped(raw, event, field_map), where=where, errors=errors,
                      default_campaign=default_campaign, clamp_score=True)
        return Item(where=where, kind=kind, lead=lead, external_id=_external_id(lead))


# Marketo --------------------------------------------------------------------------------------------------

# A Marketo webhook body is a template its user writes; these are the names people give the tokens.
MARKETO_FIELDS: dict[str, tuple[str, ...]] = {
    "external_id": ("id", "leadId", "Id", "Lead ID", "external_id"),
    "email": ("email", "Email", "Email Address", "emailAddress"),
    "first_name": ("firstName", "First Name", "FirstName", "first_name"),
    "last_name": ("lastName", "Last Name", "LastName", "last_name"),
    "phone": ("phone", "Phone", "Phone Number", "phoneNumber", "mobilePhone", "Mobile Phone Number"),
    "title": ("title", "Title", "Job Title", "jobTitle"),
    "company.name": ("company.name", "company", "Company", "Company Name", "companyName"),
    "company.domain": ("company.domain", "website", "Website"),
    "company.industry": ("company.industry", "industry", "Industry"),
    "company.employees": ("company.employees", "numberOfEmployees", "Number of Employees", "NumberOfEmployees",
                          "numEmployees"),
    "company.country": ("company.country", "country", "Country"),
    "company.region": ("company.region", "state", "State", "region"),
    "company.postal_code": ("company.postal_code", "postalCode", "Postal Code", "Zip", "zip", "postal_code"),
    "score": ("leadScore", "Lead Score", "score", "Score"),
    "product": ("product", "Product"),
    "estimated_value": ("estimatedValue", "estimated_value", "Estimated Value"),
    "campaign": ("campaign", "Campaign", "programName", "Program Name"),
    "occurred_at": ("occurredAt", "occurred_at", "createdAt", "Created At"),
}


class MarketoAdapter(_JsonAdapter):
    """A Marketo webhook's JSON template: one object, or an array of them."""

    name = "marketo"
    def batch(self, payload: Any, *, field_map: Mapping[str, str], default_campaign: str | None,
              fallback_id: str | None) -> Batch:
        return _one_or_many(payload, "a JSON object or an array of objects",
                            lambda element, where, errors: self._lead(element, where, field_map, default_campaign,
                                                                      errors))

    @staticmethod
    def _lead(record: dict[str, Any], where: str, field_map: Mapping[str, str], default_campaign: str | None,
              errors: _Errors) -> Item:
        raw = {target: _first(record, paths) for target, paths in MARKETO_FIELDS.items()}
        if "company.domain" not in field_map:
            raw["company.domain"] = _domain(raw["company.domain"])
        lead = _build(_mapped(raw, record, field_map), where=where, errors=errors,
                      default_campaign=default_campaign)
        return Item(where=where, kind="lead", lead=lead, external_id=_external_id(lead))


# form -----------------------------------------------------------------------------------------------------

class FormAdapter:
    """An HTML form post with the generic field names (`company.name` for nesting)."""

    name = "form"
    content_types: tuple[str, ...] = (FORM,)

    def parse(self, text: str, media_type: str) -> Any:
        return parse_form(text)

    def batch(self, payload: Any, *, field_map: Mapping[str, str], default_campaign: str | None,
              fallback_id: str | None) -> Batch:
        body = _require_object(payload, "form fields")
        errors = _Errors()
        raw = {target: get_path(body, target) for target in sorted(TARGETS)}
        lead = _build(_mapped(raw, body, field_map), where="", errors=errors, default_campaign=default_campaign)
        if "external_id" not in lead:  # a form has no id of its own: the webhook-id, else a new one per post
            lead["external_id"] = fallback_id or str(uuid.uuid4())
        errors.raise_if_any()
        return Batch([Item(where="", kind="lead", lead=lead, external_id=_external_id(lead))], multi=False)


ADAPTERS: dict[str, Adapter] = {adapter.name: adapter for adapter in (
    GenericAdapter(), HubSpotAdapter(), MauticAdapter(), MarketoAdapter(), FormAdapter())}


# Validation -----------------------------------------------------------------------------------------------

def validate_leads(batch: Batch) -> list[LeadIn | LeadPatch | None]:
    """Each item validated: `LeadIn` for a lead, `LeadPatch` for a change to a known lead (with the item's
    `occurred_at`), None for items that carry neither (answered `ignored`); or one `ValidationFailed` naming
    every invalid field of every item with its prefix (`[1].company.country`, `mautic.form_on_submit[0].email`),
    so a payload's leads are all stored or none."""
    out: list[LeadIn | LeadPatch | None] = []
    errors: list[dict[str, Any]] = []
    for item in batch.items:
        value: Any
        model: type[LeadIn] | type[LeadPatch]
        if item.lead is not None:
            model, value = LeadIn, item.lead
        elif item.patch and item.external_id:
            model, value = LeadPatch, {**item.patch, **({"occurred_at": item.occurred_at} if item.occurred_at else {})}
        else:
            out.append(None)
            continue
        try:
            out.append(model.model_validate(value))
        except ValidationError as exc:
            out.append(None)
            for error in field_errors(list(exc.errors())):
                field = error["field"] if error["field"] != "body" else ""
                error["field"] = _field(item.where, field) if field else (item.where or "body")
                errors.append(error)
    if errors:
        detail = "The lead is not valid; see errors." if not batch.multi else \
            "Some of the leads are not valid; nothing was stored; see errors."
        raise ValidationFailed(detail, errors=errors)
    return out
