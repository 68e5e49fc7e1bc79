"""Native payloads in the vendors' published shapes → generic leads."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.lead_router.intake.schemas import LeadIn
from services.lead_router.source.adapters import ADAPTERS, FORM, JSON, Batch, accepts, media_type, validate_leads
from services.lead_router.source.payload import BadPayload
from shared.errors import ValidationFailed

NO_CONFIG: dict[str, Any] = {"field_map": {}, "default_campaign": None, "fallback_id": None}


def run(adapter: str, payload: Any, **config: Any) -> Batch:
    return ADAPTERS[adapter].batch(payload, **{**NO_CONFIG, **config})


def errors_of(exc: pytest.ExceptionInfo[ValidationFailed]) -> dict[str, str]:
    return {e["field"]: e["type"] for e in exc.value.errors or []}


GENERIC: dict[str, Any] = {
    "external_id": "mkto-88412", "email": "dana.wu@example.com", "first_name": "Dana", "last_name": "Wu",
    "company": {"name": "Example Health", "country": "US", "region": "CA"}, "score": 82}


# Content types ---------------------------------------------------------------------------------------------

def test_content_types() -> None:
    assert media_type("Application/JSON; charset=utf-8") == JSON
    assert accepts(ADAPTERS["hubspot"], "application/json; charset=UTF-8")
    assert not accepts(ADAPTERS["generic"], None) and accepts(ADAPTERS["generic"], "application/vnd.x+json")
    assert not accepts(ADAPTERS["mautic"], "text/plain")
    assert accepts(ADAPTERS["form"], f"{FORM}; charset=utf-8") and not accepts(ADAPTERS["form"], JSON)
    assert not accepts(ADAPTERS["form"], None)
    assert ADAPTERS["form"].parse("a.b=1", FORM) == {"a": {"b": "1"}}
    assert ADAPTERS["marketo"].parse('{"a": 1}', JSON) == {"a": 1}


# generic ---------------------------------------------------------------------------------------------------

def test_generic_passes_the_body_through_without_copying() -> None:
    batch = run("generic", GENERIC)
    assert not batch.multi and batch.items[0].lead is GENERIC and batch.items[0].external_id == "mkto-88412"


def test_generic_normalizes_the_country_without_touching_the_input() -> None:
    body = copy.deepcopy(GENERIC)
    body["company"]["country"] = "United States"
    lead = run("generic", body).items[0].lead
    assert lead is not None and lead["company"]["country"] == "US"
    assert body["company"]["country"] == "United States"


def test_generic_unknown_country_is_a_422_naming_the_field() -> None:
    with pytest.raises(ValidationFailed) as exc:
        run("generic", {**GENERIC, "company": {"name": "X", "country": "Narnia"}})
    assert errors_of(exc) == {"company.country": "country_unknown"}


def test_generic_leaves_missing_or_odd_countries_to_leadin() -> None:
    body = {**GENERIC, "company": {"name": "X", "country": 12}}
    assert run("generic", body).items[0].lead is body
    with pytest.raises(ValidationFailed) as exc:
        validate_leads(run("generic", body))
    assert "company.country" in errors_of(exc)


def test_generic_null_is_unreadable() -> None:
    with pytest.raises(BadPayload, match="not null"):
        run("generic", None)


@pytest.mark.parametrize("payload", [[GENERIC], "x", 3, True])
def test_generic_wants_an_object(payload: Any) -> None:
    with pytest.raises(ValidationFailed) as exc:  # the generic intake's 422 on `body`, as before adapters
        run("generic", payload)
    assert errors_of(exc) == {"body": "model_type"}


def test_generic_field_map_and_default_campaign() -> None:
    body = {**GENERIC, "crm": {"id": 991, "land": "Deutschland", "employees": "1,200"}, "campaign": ""}
    batch = run("generic", body, default_campaign="q3-webinar",
                field_map={"external_id": "crm.id", "company.country": "crm.land",
                           "company.employees": "crm.employees", "first_name": "nope.absent"})
    lead = batch.items[0].lead
    assert lead is not None
    assert lead["external_id"] == "991" and lead["company"]["country"] == "DE" and lead["company"]["employees"] == 1200
    assert "first_name" not in lead and lead["campaign"] == "q3-webinar"
    assert body["company"] == GENERIC["company"] and body["campaign"] == ""  # the input is not modified
    assert validate_leads(batch)[0] is not None


# HubSpot ---------------------------------------------------------------------------------------------------

# A workflow "Send a webhook" body: the legacy contact record (developers.hubspot.com, Contacts API v1
# "contact profile"; `vid`, `canonical-vid`, `properties.<name>.value`), values all strings.
HUBSPOT_CONTACT: dict[str, Any] = {
    "vid": 3234574, "canonical-vid": 3234574, "merged-vids": [], "portal-id": 62515, "is-contact": True,
    "profile-url": "https://app.hubspot.com/contacts/62515/contact/3234574",
    "properties": {
        "email": {"value": " dana.wu@example.com ", "versions": [{"value": "dana.wu@example.com"}]},
        "firstname": {"value": "Dana"}, "lastname": {"value": "Wu"}, "phone": {"value": ""},
        "mobilephone": {"value": "+1 415 555 0100"}, "jobtitle": {"value": "IT Director"},
        "company": {"value": "Example Health"}, "website": {"value": "https://www.example.com/about"},
        "industry": {"value": "HOSPITAL_HEALTH_CARE"}, "numemployees": {"value": "1000+"},
        "country": {"value": "United States"}, "state": {"value": "California"}, "zip": {"value": "94107"},
        "hubspotscore": {"value": "82"}, "createdate": {"value": "1732460000000"},
        "lifecyclestage": {"value": "lead"},
    },
    "form-submissions": [], "list-memberships": [],
    "identity-profiles": [{"vid": 3234574, "identities": [{"type": "EMAIL", "value": "dana.wu@example.com"}]}],
}


def test_hubspot_workflow_contact_record() -> None:
    batch = run("hubspot", HUBSPOT_CONTACT)
    assert not batch.multi
    (item,) = batch.items
    assert item.kind == "contact" and item.external_id == "3234574"
    assert item.lead == {
        "external_id": "3234574", "email": "dana.wu@example.com", "first_name": "Dana", "last_name": "Wu",
        "phone": "+1 415 555 0100", "title": "IT Director", "score": 82,
        "company": {"name": "Example Health", "domain": "example.com", "industry": "HOSPITAL_HEALTH_CARE",
                    "employees": 1000, "country": "US", "region": "CA", "postal_code": "94107"}}
    (lead,) = validate_leads(batch)
    assert isinstance(lead, LeadIn) and lead.company.country == "US"


def test_hubspot_flat_v3_properties_and_field_map() -> None:
    record = {"id": "501", "properties": {"email": "a@b.co", "company": "Acme", "hs_country": "Germany",
                                          "country": "France", "hubspotscore": "2500", "numemployees": "25-50"}}
    lead = run("hubspot", record, field_map={"company.country": "properties.hs_country"},
               default_campaign="emea").items[0].lead
    assert lead == {"external_id": "501", "email": "a@b.co", "score": 1000, "campaign": "emea",
                    "company": {"name": "Acme", "employees": 25, "country": "DE"}}


def test_hubspot_unknown_country_names_the_field() -> None:
    record = copy.deepcopy(HUBSPOT_CONTACT)
    record["properties"]["country"]["value"] = "Atlantis"
    with pytest.raises(ValidationFailed) as exc:
        run("hubspot", record)
    assert errors_of(exc) == {"company.country": "country_unknown"}


# Webhook subscription events: the documented example bodies (developers.hubspot.com, "Webhooks API":
# contact.creation as in the v1 request validation example; contact.propertyChange as in the payload docs).
HUBSPOT_EVENTS: list[dict[str, Any]] = [
    {"eventId": 1, "subscriptionId": 12345, "portalId": 62515, "occurredAt": 1564113600000,
     "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": 123, "changeSource": "CRM",
     "changeFlag": "NEW", "appId": 54321},
    {"objectId": 1246965, "propertyName": "lifecyclestage", "propertyValue": "subscriber",
     "changeSource": "ACADEMY", "eventId": 3816279340, "subscriptionId": 25, "portalId": 33, "appId": 1160452,
     "occurredAt": 1462216307945, "subscriptionType": "contact.propertyChange", "attemptNumber": 0},
    {"objectId": 1246965, "propertyName": "hubspotscore", "propertyValue": "91", "eventId": 3816279341,
     "subscriptionId": 26, "portalId": 33, "appId": 1160452, "occurredAt": 1462216307946,
     "subscriptionType": "contact.propertyChange", "attemptNumber": 0},
    {"objectId": 1246965, "propertyName": "country", "propertyValue": "Deutschland", "eventId": 3816279342,
     "subscriptionId": 27, "portalId": 33, "appId": 1160452, "occurredAt": 1462216307947,
     "subscriptionType": "contact.propertyChange", "attemptNumber": 0},
    {"objectId": 1246965, "propertyName": "jobtitle", "propertyValue": "", "eventId": 3816279343,
     "subscriptionId": 28, "portalId": 33, "appId": 1160452, "occurredAt": 1462216307948,
     "subscriptionType": "contact.propertyChange", "attemptNumber": 0},
    {"objectId": 77, "eventId": 5, "subscriptionType": "deal.creation", "occurredAt": 1462216307949},
]


def test_hubspot_subscription_events() -> None:
    batch = run("hubspot", HUBSPOT_EVENTS)
    assert batch.multi and [i.where for i in batch.items] == [f"[{n}]" for n in range(6)]
    creation, lifecycle, score, country, emptied, deal = batch.items
    assert (creation.kind, creation.external_id, creation.lead, creation.patch) == ("contact.creation", "123", None,
                                                                                     None)
    assert creation.occurred_at == "2019-07-26T04:00:00+00:00"
    assert lifecycle.patch is None and lifecycle.external_id == "1246965"  # not a lead field: ignored
    assert score.patch == {"score": 91} and score.kind == "contact.propertyChange"
    assert country.patch == {"company": {"country": "DE"}}
    assert emptied.patch is None
    assert deal.kind == "deal.creation" and deal.patch is None and deal.lead is None


def test_hubspot_property_change_follows_the_field_map() -> None:
    events = [{**HUBSPOT_EVENTS[3], "propertyName": "hs_country"}, HUBSPOT_EVENTS[3]]
    batch = run("hubspot", events, field_map={"company.country": "properties.hs_country.value"})
    assert batch.items[0].patch == {"company": {"country": "DE"}}
    assert batch.items[1].patch is None  # `country` no longer feeds company.country


def test_hubspot_event_errors_name_the_item() -> None:
    events = [HUBSPOT_EVENTS[2], {**HUBSPOT_EVENTS[3], "propertyValue": "Atlantis"},
              {**HUBSPOT_EVENTS[2], "propertyValue": "lots"}, {**HUBSPOT_EVENTS[2], "objectId": None}]
    with pytest.raises(ValidationFailed) as exc:
        run("hubspot", events)
    assert errors_of(exc) == {"[1].company.country": "country_unknown", "[2].score": "number_parsing",
                              "[3].objectId": "missing"}


def test_hubspot_array_of_contact_records_is_a_batch() -> None:
    second = copy.deepcopy(HUBSPOT_CONTACT)
    second["vid"] = 42
    second["properties"]["country"]["value"] = "Narnia"
    with pytest.raises(ValidationFailed) as exc:
        run("hubspot", [HUBSPOT_CONTACT, second])
    assert errors_of(exc) == {"[1].company.country": "country_unknown"}
    second["properties"]["country"]["value"] = "gb"
    batch = run("hubspot", [HUBSPOT_CONTACT, second])
    assert batch.multi and [i.external_id for i in batch.items] == ["3234574", "42"]


@pytest.mark.parametrize(("payload", "message"), [
    ([], "empty"), ("x", "Expected"), ([1], r"\[0\]"), ({"vid": 1, "properties": []}, "properties"),
])
def test_hubspot_wrong_shapes(payload: Any, message: str) -> None:
    with pytest.raises(BadPayload, match=message):
        run("hubspot", payload)


# Mautic ----------------------------------------------------------------------------------------------------

def _mautic_field(alias: str, value: Any, type_: str = "text") -> dict[str, Any]:
    return {"id": 1, "group": "core", "label": alias.title(), "alias": alias, "type": type_, "value": value}


# Shaped as mautic/mautic app/bundles/LeadBundle/Assets/WebhookPayload/lead_post_save_new.json (trimmed),
# wrapped as Mautic sends it: keyed by event type, plus the top-level `timestamp`.
MAUTIC_CONTACT: dict[str, Any] = {
    "isPublished": True, "dateAdded": "2017-06-19T09:31:18+00:00", "id": 52, "points": 0, "color": None,
    "fields": {
        "core": {alias: _mautic_field(alias, value) for alias, value in {
            "title": "Mr.", "firstname": "John", "lastname": "Doe", "company": "Mautic", "position": "CTO",
            "email": "john@doe.name", "mobile": "333444555", "phone": None, "city": "Prague", "state": None,
            "zipcode": "16000", "country": "Czech Republic", "website": None, "attribution": 32}.items()},
        "social": {"twitter": _mautic_field("twitter", None)}, "personal": [], "professional": []},
    "lastActive": None, "owner": {"id": 1, "username": "admin"}, "ipAddresses": [], "tags": [[]],
    "dateIdentified": "2017-06-19T09:31:18+00:00", "preferredProfileImage": "gravatar", "doNotContact": [],
}


def test_mautic_new_and_updated_contacts() -> None:
    updated = copy.deepcopy(MAUTIC_CONTACT)
    updated["id"], updated["points"] = 53, -5
    updated["fields"]["core"]["email"]["value"] = "jane@doe.name"
    body = {"mautic.lead_post_save_new": [{"contact": MAUTIC_CONTACT, "timestamp": "2017-06-19T09:31:18+00:00"}],
            "mautic.lead_post_save_update": [{"contact": updated, "timestamp": "2017-06-19T09:32:00+00:00"}],
            "timestamp": "2017-06-19T09:32:01+00:00"}
    batch = run("mautic", body, default_campaign="mautic-inbound")
    assert batch.multi
    new, update = batch.items
    assert new.where == "mautic.lead_post_save_new[0]" and new.kind == "mautic.lead_post_save_new"
    assert new.lead == {"external_id": "52", "email": "john@doe.name", "first_name": "John", "last_name": "Doe",
                        "phone": "333444555", "title": "CTO", "score": 0, "occurred_at": "2017-06-19T09:31:18+00:00",
                        "campaign": "mautic-inbound",
                        "company": {"name": "Mautic", "country": "CZ", "postal_code": "16000"}}
    assert update.lead is not None and update.lead["score"] == 0 and update.external_id == "53"  # -5 clamped
    assert all(lead is not None for lead in validate_leads(batch))


def test_mautic_points_change_uses_new_points() -> None:
    # The payload as LeadBundle's WebhookSubscriber::onLeadPointChange builds it (`contact`, `points`).
    body = {"mautic.lead_points_change": [{"contact": MAUTIC_CONTACT, "points": {"old_points": 0, "new_points": 35},
                                           "timestamp": "2017-06-19T09:33:59+00:00"}],
            "timestamp": "2017-06-19T09:34:00+00:00"}
    (item,) = run("mautic", body).items
    assert item.lead is not None and item.lead["score"] == 35


def test_mautic_legacy_lead_key_and_fields_as_empty_array() -> None:
    contact = {"id": 7, "points": "12", "fields": []}
    (item,) = run("mautic", {"mautic.lead_points_change": [{"lead": contact}]}).items
    assert item.lead == {"external_id": "7", "score": 12}


def test_mautic_form_submission_falls_back_to_the_results() -> None:
    # Shaped as mautic/mautic app/bundles/FormBundle/Assets/WebhookPayload/form_on_submit.json.
    lead = {"id": 26, "points": 10, "color": None, "fields": {"core": {
        "firstname": _mautic_field("firstname", None), "email": _mautic_field("email", "email@formsubmit.com"),
        "country": _mautic_field("country", None)}, "social": {}, "personal": [], "professional": []}}
    submission = {"id": 13, "ipAddress": {}, "form": {"id": 4, "name": "lead points", "alias": "leadpoints"},
                  "lead": lead, "trackingId": "dd4adafdabe75184bc206037a15d9f840adb5ec0",
                  "dateSubmitted": "2015-08-26T01:30:34+00:00", "referer": "http://mautic-gh.com/s/forms/preview/4",
                  "page": None, "results": {"email": "email@formsubmit.com", "firstname": "Ada",
                                            "country": "Schweiz", "product_interest": "storage"}}
    body = {"mautic.form_on_submit": [{"submission": submission, "timestamp": "2015-08-26T01:30:34+00:00"}],
            "timestamp": "2015-08-26T01:30:35+00:00"}
    (item,) = run("mautic", body, field_map={"product": "submission.results.product_interest"}).items
    assert item.lead is not None
    assert item.lead["first_name"] == "Ada" and item.lead["company"] == {"country": "CH"}
    assert item.lead["product"] == "storage" and item.lead["external_id"] == "26"


def test_mautic_other_events_are_ignored_items() -> None:
    body = {"mautic.email_on_open": [{"stat": {"id": 1}}], "timestamp": "2017-06-19T09:31:18+00:00"}
    (item,) = run("mautic", body).items
    assert (item.kind, item.lead, item.patch) == ("mautic.email_on_open", None, None)


def test_mautic_errors_name_the_event() -> None:
    bad = copy.deepcopy(MAUTIC_CONTACT)
    bad["fields"]["core"]["country"]["value"] = "Mordor"
    body = {"mautic.lead_post_save_new": [{"contact": MAUTIC_CONTACT}, {"contact": bad}]}
    with pytest.raises(ValidationFailed) as exc:
        run("mautic", body)
    assert errors_of(exc) == {"mautic.lead_post_save_new[1].company.country": "country_unknown"}


@pytest.mark.parametrize(("payload", "message"), [
    ([], "Expected a JSON object"), ({"timestamp": "2017-06-19T09:31:18+00:00"}, "no Mautic events"),
    ({"mautic.lead_post_save_new": [1]}, r"lead_post_save_new\[0\]"),
    ({"mautic.lead_post_save_new": [{"nothing": 1}]}, "contact"),
    ({"mautic.form_on_submit": [{"submission": None}]}, "submission"),
])
def test_mautic_wrong_shapes(payload: Any, message: str) -> None:
    with pytest.raises(BadPayload, match=message):
        run("mautic", payload)


# Marketo ---------------------------------------------------------------------------------------------------

# A Marketo webhook template as users write it: tokens such as {{lead.Email Address}} under their own keys.
MARKETO = {"leadId": 88412, "Email Address": "dana.wu@example.com", "First Name": "Dana", "lastName": "Wu",
           "Company Name": "Example Health", "country": "USA", "state": "ca", "postalCode": "94107",
           "title": "", "numberOfEmployees": "1200", "leadScore": "82",
           "createdAt": "2026-11-20 15:04:05", "Custom Fields": {"Product Line": "storage"}}


def test_marketo_template() -> None:
    batch = run("marketo", MARKETO, field_map={"product": "Custom Fields.Product Line"})
    (item,) = batch.items
    assert not batch.multi and item.external_id == "88412"
    assert item.lead == {"external_id": "88412", "email": "dana.wu@example.com", "first_name": "Dana",
                         "last_name": "Wu", "score": 82, "product": "storage",
                         "occurred_at": "2026-11-20T15:04:05+00:00",
                         "company": {"name": "Example Health", "employees": 1200, "country": "US", "region": "CA",
                                     "postal_code": "94107"}}
    (lead,) = validate_leads(batch)
    assert lead is not None and lead.occurred_at is not None and lead.occurred_at.hour == 15


def test_marketo_array_is_a_batch_with_indexed_errors() -> None:
    with pytest.raises(ValidationFailed) as exc:
        run("marketo", [MARKETO, {**MARKETO, "leadScore": "high", "createdAt": "yesterday"}])
    assert errors_of(exc) == {"[1].score": "number_parsing", "[1].occurred_at": "datetime_parsing"}
    assert run("marketo", [MARKETO, MARKETO]).multi


def test_validate_leads_prefixes_leadin_errors() -> None:
    batch = run("marketo", [MARKETO, {**MARKETO, "Email Address": "not-an-email", "leadScore": "5000"}])
    with pytest.raises(ValidationFailed) as exc:
        validate_leads(batch)
    assert set(errors_of(exc)) == {"[1].email", "[1].score"}


# form ------------------------------------------------------------------------------------------------------

def test_form_post() -> None:
    form = ADAPTERS["form"].parse(
        "email=ada%40example.com&first_name=Ada&company.name=Analytical+Engines&company.country=united+kingdom"
        "&company.employees=12&score=40&estimated_value=1e4&utm_source=ads&title=", FORM)
    batch = run("form", form, fallback_id="wh_123", default_campaign="site-form")
    (item,) = batch.items
    assert item.lead == {"external_id": "wh_123", "email": "ada@example.com", "first_name": "Ada", "score": 40,
                         "estimated_value": 10000.0, "campaign": "site-form",
                         "company": {"name": "Analytical Engines", "employees": 12, "country": "GB"}}
    assert validate_leads(batch)[0] is not None


def test_form_own_external_id_and_field_map() -> None:
    form = {"external_id": "f-1", "email": "a@b.co", "org": "Acme", "company": {"country": "fr"}}
    lead = run("form", form, field_map={"company.name": "org"}, fallback_id="ignored").items[0].lead
    assert lead == {"external_id": "f-1", "email": "a@b.co", "company": {"name": "Acme", "country": "FR"}}


# Fuzz: whatever orjson can produce gives a Batch, BadPayload or ValidationFailed, nothing else -------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
    | st.sampled_from(["US", "usa", "", "1000+", "82", "2026-11-20 15:04:05", "Narnia"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["vid", "properties", "value", "country", "email", "contact", "fields", "core", "points",
                         "new_points", "subscriptionType", "objectId", "propertyName", "propertyValue", "company",
                         "mautic.lead_post_save_new", "mautic.form_on_submit", "submission", "lead", "results",
                         "leadId", "id", "score", "occurredAt", "timestamp"]) | st.text(max_size=8),
        inner, max_size=5),
    max_leaves=25)


@settings(max_examples=400, deadline=None)
@given(payload=_json, adapter=st.sampled_from(sorted(ADAPTERS)))
def test_fuzz_adapters_fail_cleanly(payload: Any, adapter: str) -> None:
    field_map = {"company.country": "country", "score": "properties.score.value", "occurred_at": "timestamp"}
    for config in (NO_CONFIG, {**NO_CONFIG, "field_map": field_map, "default_campaign": "c", "fallback_id": "f"}):
        try:
            batch = run(adapter, payload, **config)
        except (BadPayload, ValidationFailed):
            continue
        orjson.dumps([item.lead for item in batch.items] + [item.patch for item in batch.items])
        try:
            validate_leads(batch)
        except ValidationFailed:
            pass
