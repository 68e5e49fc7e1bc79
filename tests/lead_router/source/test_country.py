from __future__ import annotations

import pycountry
import pytest

from services.lead_router.source.country import normalize_country, normalize_region


@pytest.mark.parametrize(("value", "code"), [
    ("US", "US"), ("us", "US"), ("usa", "US"), ("USA", "US"), ("U.S.A.", "US"), ("U.S.", "US"),
    ("United States", "US"), ("united states of america", "US"), ("  United   States ", "US"), ("840", "US"),
    ("UK", "GB"), ("Great Britain", "GB"), ("United Kingdom", "GB"), ("GBR", "GB"), ("England", "GB"),
    ("Deutschland", "DE"), ("germany", "DE"), ("DEU", "DE"), ("Federal Republic of Germany", "DE"),
    ("Czech Republic", "CZ"), ("Czechia", "CZ"), ("Česko", "CZ"), ("Côte d'Ivoire", "CI"), ("cote divoire", "CI"),
    ("Ivory Coast", "CI"), ("Korea, Republic of", "KR"), ("Republic of Korea", "KR"), ("South Korea", "KR"),
    ("North Korea", "KP"), ("Iran", "IR"), ("Viet Nam", "VN"), ("Vietnam", "VN"), ("Russia", "RU"),
    ("St. Lucia", "LC"), ("Saint Kitts & Nevis", "KN"), ("Trinidad & Tobago", "TT"),
    ("The Netherlands", "NL"), ("Holland", "NL"), ("Türkiye", "TR"), ("Turkey", "TR"),
    ("Democratic Republic of the Congo", "CD"), ("Congo", "CG"), ("Vatican City State", "VA"), ("Taiwan", "TW"),
    ("Bolivia", "BO"), ("Kosovo", "XK"), ("XK", "XK"),
    ("Narnia", None), ("", None), ("   ", None), ("ZZ", None), ("U", None), ("United", None), ("Virgin Islands", None),
])
def test_normalize_country(value: str, code: str | None) -> None:
    assert normalize_country(value) == code


def test_every_iso_country_by_code_and_name() -> None:
    for country in pycountry.countries:
        for value in (country.alpha_2, country.alpha_3, country.name, country.name.upper(),
                      getattr(country, "official_name", country.name), getattr(country, "common_name", country.name)):
            assert normalize_country(value) == country.alpha_2, value


@pytest.mark.parametrize(("value", "country", "region"), [
    ("CA", "US", "CA"), ("ca", "US", "CA"), ("California", "US", "CA"), ("massachusetts", "US", "MA"),
    ("US-NY", "US", "NY"), ("Bayern", "DE", "BY"), ("Ontario", "CA", "ON"), ("Somewhere", "US", "SOMEWHERE"),
    ("California", None, "CALIFORNIA"), (" tx ", "US", "TX"),
])
def test_normalize_region(value: str, country: str | None, region: str) -> None:
    assert normalize_region(value, country) == region
