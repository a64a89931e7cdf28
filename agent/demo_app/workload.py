"""The user traffic: who asks what, in which language, and when.

Request features are balanced against each other, so a planted fault tied to one feature
(long requests, currency questions, multi-city trips) is not confounded with another, and the
harmless feature (Spanish) is spread evenly over all of them.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from .catalog import CITIES, HOME_CITIES, USD_RATES, City

KIND_WEIGHTS: dict[str, float] = {
    "weather": 0.15, "flights": 0.28, "hotels": 0.17, "currency": 0.15, "trip": 0.25,
}
MULTI_CITY_SHARE_OF_TRIPS = 0.5
SPANISH_SHARE = 0.2
LONG_SHARE = 0.15
LONG_MIN_CHARS = 450
N_USERS = 80

MONTHS = ("March", "April", "May", "June")
MONTHS_ES = ("marzo", "abril", "mayo", "junio")

TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("weather", "en"): (
        "What's the weather going to be like in {dest} on {date}?",
        "Should I pack an umbrella for {dest}? I'll be there on {date}.",
    ),
    ("weather", "es"): ("¿Qué tiempo hará en {dest} el {date}?",),
    ("flights", "en"): (
        "Find me a flight from {origin} to {dest} on {date}.",
        "Cheapest economy flight {origin} to {dest} on {date}, please.",
    ),
    ("flights", "es"): ("Búscame un vuelo de {origin} a {dest} el {date}.",),
    ("hotels", "en"): (
        "I need a hotel in {dest} for {nights} nights from {date}, under ${budget} a night.",
    ),
    ("hotels", "es"): (
        "Necesito un hotel en {dest} por {nights} noches desde el {date}, "
        "menos de {budget} dólares la noche.",
    ),
    ("currency", "en"): (
        "How much is {amount} {src} in {dst}?",
        "Convert {amount} {src} to {dst} for me.",
    ),
    ("currency", "es"): ("¿Cuánto son {amount} {src} en {dst}?",),
    ("trip", "en"): (
        "Plan a {nights}-day trip from {origin} to {dest} starting {date}: "
        "flights, a hotel and what the weather will be.",
    ),
    ("trip", "es"): (
        "Planea un viaje de {nights} días de {origin} a {dest} desde el {date}: "
        "vuelos, hotel y el clima.",
    ),
    ("multi", "en"): (
        "Plan a multi-city trip from {origin}: {stops}, leaving {date}, about {nights} nights "
        "in each. I need flights between each city and hotels.",
    ),
    ("multi", "es"): (
        "Planea un viaje por varias ciudades desde {origin}: {stops}, saliendo el {date}, "
        "unas {nights} noches en cada una. Necesito vuelos entre ciudades y hoteles.",
    ),
}

PREAMBLE: dict[str, tuple[str, ...]] = {
    "en": (
        "Some context first: I'm travelling with my partner and our two kids (6 and 9), and my "
        "mother is joining us; she uses a wheelchair, so accessibility matters a lot.",
        "We've had bad experiences with long layovers before, so I'd rather pay a bit more for "
        "a direct connection if one exists.",
        "Our budget is flexible but not unlimited, and we care more about location than luxury.",
        "Last time we booked through another site the hotel had no record of our reservation, "
        "which was a nightmare at midnight, so please double-check everything.",
        "I also collect points with a couple of airlines, though I can't remember which "
        "alliance they belong to.",
        "None of us speaks the local language well, so places where English is common help.",
    ),
    "es": (
        "Primero un poco de contexto: viajo con mi pareja y nuestros dos hijos (6 y 9 años), y "
        "mi madre viene con nosotros; usa silla de ruedas, así que la accesibilidad es clave.",
        "Hemos tenido malas experiencias con escalas largas, así que prefiero pagar un poco más "
        "por un vuelo directo si existe.",
        "El presupuesto es flexible pero no ilimitado, y nos importa más la ubicación que "
        "el lujo.",
        "La última vez reservamos en otra web y el hotel no tenía nuestra reserva, fue una "
        "pesadilla a medianoche, así que revisa todo dos veces, por favor.",
        "También acumulo puntos con un par de aerolíneas, aunque no recuerdo de qué alianza.",
        "Ninguno habla bien el idioma local, así que ayudan los sitios donde se hable inglés.",
    ),
}


@dataclass(frozen=True)
class UserRequest:
    """One user message plus the facts the scripted model is 'told' about it."""

    text: str
    kind: str
    language: str
    origin: City
    destinations: tuple[City, ...]
    date: str
    nights: int
    user_id: str
    currency_pair: tuple[str, str] = ("USD", "EUR")
    amount: float = 0.0
    budget: int = 0

    @property
    def is_multi_city(self) -> bool:
        return len(self.destinations) > 1

    @property
    def is_long(self) -> bool:
        return len(self.text) > 400


class Workload:
    """Draws requests. Kinds are random; language, length and multi-city are stratified.

    Spanish, long and multi-city requests come in fixed proportions within each kind (by
    counting, not by chance), so at a few hundred traces the harmless feature is not
    accidentally concentrated in a faulty kind and no fault is confounded with another.
    """

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.seen: Counter[tuple[str, ...]] = Counter()

    def _every(self, share: float, *key: str) -> bool:
        """True for a `share` of the calls with this key, spread evenly."""
        n = self.seen[key]
        self.seen[key] += 1
        return int((n + 1) * share) > int(n * share)

    def draw(self) -> UserRequest:
        rng = self.rng
        kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
        language = "es" if self._every(SPANISH_SHARE, "es", kind) else "en"
        multi = kind == "trip" and self._every(MULTI_CITY_SHARE_OF_TRIPS, "multi", language)
        long = self._every(LONG_SHARE, "long", kind, language)
        return _request(rng, kind, language, multi, long)


def _request(rng: random.Random, kind: str, language: str, multi: bool, long: bool
             ) -> UserRequest:
    """Fill a template for one request with random cities, dates and amounts."""
    origin = rng.choice(HOME_CITIES)
    n_stops = rng.choice((2, 3)) if multi else 1
    destinations = tuple(rng.sample([c for c in CITIES if c != origin], n_stops))
    month_i = rng.randrange(len(MONTHS))
    day = rng.randint(1, 28)
    date = f"{MONTHS[month_i]} {day}" if language == "en" else f"{day} de {MONTHS_ES[month_i]}"
    src, dst = rng.sample(sorted(USD_RATES), 2)
    fields = {
        "origin": _name(origin, language),
        "dest": _name(destinations[0], language),
        "stops": _stops(destinations, language),
        "date": date,
        "nights": rng.randint(2, 6),
        "budget": rng.choice((120, 150, 200, 250)),
        "amount": rng.choice((50, 120, 300, 750, 1200, 2500)),
        "src": src,
        "dst": dst,
    }
    template_kind = "multi" if multi else kind
    text = rng.choice(TEMPLATES[(template_kind, language)]).format(**fields)
    if long:
        text = _with_preamble(text, language, rng)
    return UserRequest(
        text=text, kind=kind, language=language, origin=origin, destinations=destinations,
        date=date, nights=fields["nights"], user_id=f"user-{rng.randrange(N_USERS):04d}",
        currency_pair=(src, dst), amount=float(fields["amount"]), budget=fields["budget"],
    )


def arrival_offsets(n: int, hours: float, rng: random.Random) -> list[float]:
    """`n` sorted arrival times (seconds from the start) with a mild day/night rhythm.

    The rhythm is relative to the corpus start (busiest around hours 12-18 of each day), so
    the traffic in any window does not depend on the wall-clock time the corpus is built.
    """
    offsets: list[float] = []
    while len(offsets) < n:
        t = rng.uniform(0, hours * 3600)
        weight = 1 + 0.5 * math.sin(2 * math.pi * ((t / 3600) % 24 - 9) / 24)
        if rng.uniform(0, 1.5) < weight:
            offsets.append(t)
    return sorted(offsets)


def _name(city: City, language: str) -> str:
    return city.name_es if language == "es" else city.name


def _stops(cities: tuple[City, ...], language: str) -> str:
    names = [_name(c, language) for c in cities]
    joiner = ", luego " if language == "es" else ", then "
    return joiner.join(names)


def _with_preamble(text: str, language: str, rng: random.Random) -> str:
    """Prefix the request with the kind of rambling context some users give."""
    pieces = list(PREAMBLE[language])
    rng.shuffle(pieces)
    preamble = ""
    for piece in pieces:
        preamble = f"{preamble} {piece}".strip()
        if len(preamble) + len(text) >= LONG_MIN_CHARS:
            break
    return f"{preamble} {text}"
