"""Country names and codes → ISO 3166-1 alpha-2, from pycountry's ISO data plus a small alias table.

The lookup table is built once at import: every alpha-2, alpha-3 and numeric code, name, official name and
common name, the "Korea, Republic of" names also in reading order ("Republic of Korea"), parenthesised
parts on their own, and `_ALIASES` (abbreviations, older and native names). Keys are compared case-,
accent-, space- and punctuation-insensitively, with a leading "the" ignored and "st"/"&" read as
"saint"/"and". An exact upper-case alpha-2 code is answered without normalizing anything.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import pycountry

_DROP = re.compile(r"[.'’`´]")
_SEPARATE = re.compile(r"[^\w]+|_")

_ALIASES: dict[str, str] = {
    # United States
    "usa": "US", "u s a": "US", "u s": "US", "america": "US", "united states of america": "US",
    "the united states": "US", "us of a": "US", "estados unidos": "US", "etats unis": "US",
    # United Kingdom
    "uk": "GB", "u k": "GB", "great britain": "GB", "britain": "GB", "england": "GB", "scotland": "GB",
    "wales": "GB", "northern ireland": "GB", "united kingdom of great britain": "GB",
    # German, Dutch, French, ... names people type
    "deutschland": "DE", "allemagne": "DE", "alemania": "DE", "germania": "DE", "west germany": "DE",
    "holland": "NL", "nederland": "NL", "the netherlands": "NL", "pays bas": "NL",
    "belgie": "BE", "belgique": "BE", "osterreich": "AT", "oesterreich": "AT", "schweiz": "CH",
    "suisse": "CH", "svizzera": "CH", "espana": "ES", "italia": "IT", "sverige": "SE", "norge": "NO",
    "danmark": "DK", "suomi": "FI", "polska": "PL", "brasil": "BR", "mexico": "MX", "nippon": "JP",
    "nihon": "JP", "ceska republika": "CZ", "czech republic": "CZ", "hrvatska": "HR", "magyarorszag": "HU",
    "cesko": "CZ", "eire": "IE", "ellada": "GR", "hellas": "GR", "rossiya": "RU", "russia": "RU", "zhongguo": "CN",
    "prc": "CN", "peoples republic of china": "CN", "mainland china": "CN", "hong kong sar": "HK",
    "macau": "MO", "roc": "TW", "republic of china": "TW",
    # Short or older names
    "south korea": "KR", "korea": "KR", "republic of korea": "KR", "north korea": "KP", "dprk": "KP",
    "uae": "AE", "emirates": "AE", "vietnam": "VN", "laos": "LA", "syria": "SY", "moldova": "MD",
    "macedonia": "MK", "fyrom": "MK", "turkey": "TR", "turkiye": "TR", "ivory coast": "CI",
    "swaziland": "SZ", "burma": "MM", "cape verde": "CV", "east timor": "TL", "brunei": "BN",
    "palestine": "PS", "vatican": "VA", "vatican city": "VA", "holy see": "VA", "russian federation": "RU",
    "iran": "IR", "bolivia": "BO", "venezuela": "VE", "tanzania": "TZ", "micronesia": "FM",
    "dr congo": "CD", "drc": "CD", "congo kinshasa": "CD", "congo brazzaville": "CG",
    "republic of the congo": "CG", "saint martin": "MF", "sint maarten": "SX", "kosovo": "XK",
    "the gambia": "GM", "the bahamas": "BS", "falklands": "FK", "reunion": "RE", "curacao": "CW",
}
_EXTRA_CODES = {"XK": "XKX"}  # Kosovo: user-assigned, but what CRMs send


def _key(value: str) -> str:
    text = unicodedata.normalize("NFKD", value.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _DROP.sub("", text.replace("&", " and "))
    words = _SEPARATE.sub(" ", text).split()
    if words and words[0] == "the":
        words = words[1:]
    return " ".join("saint" if word == "st" else word for word in words)


def _build() -> tuple[frozenset[str], dict[str, str]]:
    alpha2: set[str] = set(_EXTRA_CODES)
    table: dict[str, str] = {}
    prefixes: dict[str, set[str]] = {}
    for country in pycountry.countries:
        code = country.alpha_2
        alpha2.add(code)
        table[code.lower()] = code
        table[country.alpha_3.lower()] = code
        table[country.numeric] = code
        table[str(int(country.numeric))] = code
        for attr in ("name", "official_name", "common_name"):
            name = getattr(country, attr, None)
            if not name:
                continue
            table.setdefault(_key(name), code)
            table.setdefault(_key(name.replace("'", " ")), code)  # "Cote d Ivoire" as well as "Cote dIvoire"
            base, paren, inner = name.partition(" (")
            if paren:  # "Holy See (Vatican City State)"
                table.setdefault(_key(base), code)
                table.setdefault(_key(inner.rstrip(")")), code)
            head, comma, tail = base.partition(", ")
            if comma:  # "Korea, Republic of" → "Republic of Korea"; "Iran" on its own when unambiguous
                table.setdefault(_key(f"{tail} {head}"), code)
                prefixes.setdefault(_key(head), set()).add(code)
    for head, codes in prefixes.items():
        if len(codes) == 1:
            table.setdefault(head, next(iter(codes)))
    for code, alpha3 in _EXTRA_CODES.items():
        table.setdefault(code.lower(), code)
        table.setdefault(alpha3.lower(), code)
    for alias, code in _ALIASES.items():
        table[_key(alias)] = code  # the alias table wins over derived names ("korea" → KR)
    return frozenset(alpha2), table


ALPHA2, _TABLE = _build()


def normalize_country(value: str) -> str | None:
    """ISO 3166-1 alpha-2 for a country code or name ("usa", "U.S.A.", "Deutschland" …), None if unknown."""
    if len(value) == 2 and value in ALPHA2:
        return value
    return _lookup(value)


@lru_cache(maxsize=4096)
def _lookup(value: str) -> str | None:
    stripped = value.strip()
    code = _TABLE.get(stripped.lower())
    if code is None:
        code = _TABLE.get(_key(stripped))
    return code


_SUBDIVISIONS: dict[str, dict[str, str]] = {}


def _subdivisions(country: str) -> dict[str, str]:
    table = _SUBDIVISIONS.get(country)
    if table is None:
        table = {}
        for sub in pycountry.subdivisions.get(country_code=country) or ():
            code = sub.code.partition("-")[2]
            table.setdefault(_key(sub.name), code)
        _SUBDIVISIONS[country] = table
    return table


def normalize_region(value: str, country: str | None) -> str:
    """A region as stored: upper case; a subdivision *name* of the country becomes its ISO 3166-2 code
    ("California" → "CA" in the US), and "US-CA" loses its country prefix. Anything else passes as is."""
    region = value.strip().upper()
    if country is None or not region:
        return region
    prefix = f"{country}-"
    if region.startswith(prefix) and len(region) > len(prefix):
        return region[len(prefix):]
    if len(region) > 3:
        code = _subdivisions(country).get(_key(region))
        if code:
            return code
    return region
