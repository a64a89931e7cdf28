"""The travel world the demo tools answer from: cities, airports, currencies, hotels."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class City:
    name: str
    name_es: str
    airport: str
    currency: str
    base_temp_c: int


CITIES: tuple[City, ...] = (
    City("Lisbon", "Lisboa", "LIS", "EUR", 19),
    City("Paris", "París", "CDG", "EUR", 14),
    City("Rome", "Roma", "FCO", "EUR", 18),
    City("Barcelona", "Barcelona", "BCN", "EUR", 19),
    City("London", "Londres", "LHR", "GBP", 12),
    City("Tokyo", "Tokio", "HND", "JPY", 17),
    City("New York", "Nueva York", "JFK", "USD", 13),
    City("Mexico City", "Ciudad de México", "MEX", "MXN", 17),
    City("Zurich", "Zúrich", "ZRH", "CHF", 10),
    City("Berlin", "Berlín", "BER", "EUR", 11),
    City("Istanbul", "Estambul", "IST", "TRY", 16),
    City("Bangkok", "Bangkok", "BKK", "THB", 29),
)

HOME_CITIES: tuple[City, ...] = CITIES[4:8]

# Units of each currency per 1 USD; fixed so answers are reproducible.
USD_RATES: dict[str, float] = {
    "USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 151.3, "MXN": 17.1,
    "CHF": 0.88, "TRY": 32.4, "THB": 36.2,
}

AIRLINES: tuple[str, ...] = ("SkyBridge", "Aurora Air", "TransAtlantica", "Meridian")
HOTEL_CHAINS: tuple[str, ...] = ("Harbor Inn", "Casa Azul", "The Linden", "Grand Central", "Nido")
CONDITIONS: tuple[str, ...] = ("sunny", "partly cloudy", "light rain", "overcast", "windy")


def city_named(name: str) -> City:
    """Look a city up by its English or Spanish name (tools receive either)."""
    for city in CITIES:
        if name in (city.name, city.name_es):
            return city
    raise KeyError(f"unknown city: {name}")
