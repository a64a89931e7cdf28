"""The assistant's tools: weather, flights, hotels, currency and a travel-guide retriever.

Each tool spends simulated latency on the request's clock and answers from the fixed catalog.
`search_flights` talks to a flaky upstream provider (see `FaultPlan.flight_provider_fails`).
"""

from __future__ import annotations

from typing import Any, Callable

from .catalog import AIRLINES, CONDITIONS, HOTEL_CHAINS, USD_RATES, city_named
from .faults import TOOL_OUTAGE
from .turn import Turn


class FlightProviderError(RuntimeError):
    """The upstream flight-search API refused the request."""


def get_weather(turn: Turn, city: str, date: str) -> dict[str, Any]:
    """Forecast for a city on a date."""
    turn.wait(0.08, 0.3)
    c = city_named(city)
    return {
        "city": c.name,
        "date": date,
        "condition": turn.rng.choice(CONDITIONS),
        "high_c": c.base_temp_c + turn.rng.randint(-3, 5),
        "low_c": c.base_temp_c - turn.rng.randint(4, 9),
    }


def search_flights(turn: Turn, origin: str, destination: str, date: str) -> dict[str, Any]:
    """Cheapest flights between two cities; the provider sometimes returns 503."""
    if turn.plan.flight_provider_fails(turn.offset_s, turn.rng):
        turn.wait(0.15, 0.4)
        if turn.plan.in_outage(turn.offset_s):
            turn.fired.add(TOOL_OUTAGE)
        raise FlightProviderError(
            "flights-api.skybridge.example returned 503 Service Unavailable"
        )
    turn.wait(0.4, 1.4)
    src, dst = city_named(origin), city_named(destination)
    options = [
        {
            "airline": turn.rng.choice(AIRLINES),
            "from": src.airport,
            "to": dst.airport,
            "date": date,
            "stops": turn.rng.choice((0, 0, 1)),
            "price_usd": turn.rng.randrange(90, 1400, 5),
        }
        for _ in range(3)
    ]
    return {"options": sorted(options, key=lambda o: o["price_usd"])}


def search_hotels(turn: Turn, city: str, check_in: str, nights: int, max_price_usd: int = 250
                  ) -> dict[str, Any]:
    """Hotels in a city under a nightly budget."""
    turn.wait(0.3, 1.1)
    c = city_named(city)
    hotels = [
        {
            "name": f"{turn.rng.choice(HOTEL_CHAINS)} {c.name}",
            "nightly_usd": turn.rng.randrange(70, max_price_usd, 5),
            "rating": round(turn.rng.uniform(3.6, 4.9), 1),
        }
        for _ in range(3)
    ]
    return {"city": c.name, "check_in": check_in, "nights": nights, "hotels": hotels}


def convert_currency(turn: Turn, amount: float, source: str, target: str) -> dict[str, Any]:
    """Convert an amount between currencies at the day's fixed rates."""
    turn.wait(0.04, 0.15)
    rate = USD_RATES[target] / USD_RATES[source]
    return {"amount": amount, "from": source, "to": target, "rate": round(rate, 4),
            "converted": round(amount * rate, 2)}


def retrieve_travel_guides(turn: Turn, query: str, k: int = 3) -> list[dict[str, Any]]:
    """Top-k travel-guide passages for a destination (RETRIEVER span)."""
    turn.wait(0.05, 0.2)
    city = query.split(" ")[-1]
    return [
        {
            "page_content": f"{city}: tip {i + 1} about neighbourhoods, transit and food.",
            "metadata": {"doc_uri": f"guides/{city.lower().replace(' ', '-')}/{i + 1}.md"},
            "id": f"guide-{city[:3].lower()}-{i + 1}",
        }
        for i in range(k)
    ]


TOOLS: dict[str, Callable[..., Any]] = {
    "get_weather": get_weather,
    "search_flights": search_flights,
    "search_hotels": search_hotels,
    "convert_currency": convert_currency,
}

TOOL_SCHEMAS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": name, "description": (fn.__doc__ or "").strip()}}
    for name, fn in TOOLS.items()
]
