"""The product catalogue: ~30 SKUs with fen prices, sales units and piece weights."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    category: str  # Avro Category symbol
    unit: str  # KG or PIECE
    price_cents: int  # per unit, fen
    piece_kg: float  # weight of one piece (1.0 for KG products)
    qty: tuple[float, float]  # typical order quantity range, in ``unit``

    def expected_kg(self, quantity: float) -> float:
        """What the picking scale should read for ``quantity`` units."""
        return round(quantity * self.piece_kg, 3)


def _kg(sku: str, name: str, category: str, price: int, lo: float, hi: float) -> Product:
    return Product(sku, name, category, "KG", price, 1.0, (lo, hi))


def _pc(sku: str, name: str, category: str, price: int, piece_kg: float, lo: int, hi: int) -> Product:
    return Product(sku, name, category, "PIECE", price, piece_kg, (lo, hi))


CATALOGUE: tuple[Product, ...] = (
    _kg("VEG-SPINACH-ORG", "有机菠菜", "VEGETABLE", 1200, 2, 10),
    _kg("VEG-CABBAGE", "大白菜", "VEGETABLE", 280, 5, 30),
    _kg("VEG-POTATO", "土豆", "VEGETABLE", 350, 5, 40),
    _kg("VEG-TOMATO", "西红柿", "VEGETABLE", 680, 3, 20),
    _kg("VEG-CUCUMBER", "黄瓜", "VEGETABLE", 520, 2, 15),
    _kg("VEG-SCALLION", "大葱", "VEGETABLE", 450, 2, 10),
    _kg("VEG-GINGER", "生姜", "VEGETABLE", 1400, 1, 5),
    _kg("VEG-GARLIC", "大蒜", "VEGETABLE", 1100, 1, 5),
    _kg("VEG-CHILI-RED", "小米辣", "VEGETABLE", 1800, 0.5, 3),
    _kg("VEG-EGGPLANT", "长茄子", "VEGETABLE", 600, 2, 12),
    _kg("VEG-BROCCOLI", "西兰花", "VEGETABLE", 980, 2, 10),
    _kg("VEG-LETTUCE", "生菜", "VEGETABLE", 760, 2, 10),
    _kg("VEG-SHIITAKE", "鲜香菇", "VEGETABLE", 1600, 1, 6),
    _kg("FRUIT-APPLE-FUJI", "红富士苹果", "FRUIT", 980, 3, 15),
    _kg("FRUIT-ORANGE", "脐橙", "FRUIT", 860, 3, 15),
    _pc("FRUIT-WATERMELON", "麒麟西瓜", "FRUIT", 3500, 6.0, 1, 4),
    _kg("FRUIT-LEMON", "黄柠檬", "FRUIT", 1200, 1, 5),
    _kg("MEAT-PORK-BELLY", "五花肉", "MEAT", 3800, 2, 15),
    _kg("MEAT-PORK-RIBS", "猪肋排", "MEAT", 5200, 2, 10),
    _kg("MEAT-BEEF-BRISKET", "牛腩", "MEAT", 8800, 2, 10),
    _kg("MEAT-LAMB-LEG", "羊腿肉", "MEAT", 9800, 2, 8),
    _pc("MEAT-CHICKEN-WHOLE", "三黄鸡", "MEAT", 4500, 1.4, 2, 10),
    _kg("MEAT-CHICKEN-WING", "鸡翅中", "MEAT", 4600, 2, 10),
    _kg("SEA-SHRIMP", "基围虾", "SEAFOOD", 9800, 1, 6),
    _pc("SEA-BASS", "鲜活鲈鱼", "SEAFOOD", 3800, 0.75, 2, 12),
    _kg("SEA-SQUID", "鱿鱼", "SEAFOOD", 5600, 1, 6),
    _kg("SEA-CLAM", "花蛤", "SEAFOOD", 1800, 2, 10),
    _pc("DAIRY-MILK-1L", "鲜牛奶 1L", "DAIRY", 1350, 1.03, 6, 36),
    _pc("DAIRY-YOGURT", "原味酸奶 160g", "DAIRY", 450, 0.17, 12, 60),
    _pc("DAIRY-EGGS-30", "鲜鸡蛋 30枚", "DAIRY", 2600, 1.9, 1, 8),
    _pc("DAIRY-BUTTER", "黄油 500g", "DAIRY", 4200, 0.52, 1, 6),
    _pc("DAIRY-CREAM-1L", "淡奶油 1L", "DAIRY", 5800, 1.05, 1, 12),
)

BY_SKU: dict[str, Product] = {p.sku: p for p in CATALOGUE}

_LINE_COUNTS = (1, 2, 3, 4, 5, 6)
_LINE_WEIGHTS = (10, 20, 25, 20, 15, 10)


def draw_quantity(rng: random.Random, product: Product) -> float:
    lo, hi = product.qty
    if product.unit == "PIECE":
        return float(rng.randint(int(lo), int(hi)))
    return max(lo, round(rng.uniform(lo, hi) * 2) / 2)  # KG in half-kilo steps


def draw_lines(rng: random.Random) -> list[dict[str, Any]]:
    """1-6 distinct order lines in the Avro ``OrderLine`` shape."""
    count = rng.choices(_LINE_COUNTS, weights=_LINE_WEIGHTS)[0]
    products = rng.sample(CATALOGUE, count)
    return [
        {"line_no": no, "sku": p.sku, "name": p.name, "category": p.category, "unit": p.unit,
         "quantity": draw_quantity(rng, p), "unit_price_cents": p.price_cents}
        for no, p in enumerate(products, start=1)
    ]


def line_total_cents(line: dict[str, Any], quantity: float | None = None) -> int:
    qty = line["quantity"] if quantity is None else quantity
    return round(qty * line["unit_price_cents"])
