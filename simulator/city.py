"""One simulated city: Beijing cold stores, restaurant customers and van drivers.

``build_city(seed, ...)`` is deterministic: the same arguments give the same
city. Names, phones and plates are fake but plausible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulator.geo import Point, clamp_to_city, haversine_m, offset_m


@dataclass(frozen=True, slots=True)
class Warehouse:
    id: str
    name: str
    district: str
    location: Point
    rooms: tuple[tuple[str, str], ...]  # (sensor device id, compartment)


@dataclass(frozen=True, slots=True)
class Restaurant:
    customer_id: str
    name: str
    district: str
    address: str
    location: Point
    contact_name: str
    contact_phone: str
    warehouse_id: str  # the nearest cold store serves it


@dataclass(frozen=True, slots=True)
class Driver:
    id: str
    name: str
    phone: str
    vehicle_id: str
    plate: str
    sensor_id: str  # chilled-compartment sensor in the van
    warehouse_id: str  # home depot


@dataclass(frozen=True, slots=True)
class City:
    warehouses: tuple[Warehouse, ...]
    restaurants: tuple[Restaurant, ...]
    drivers: tuple[Driver, ...]

    def warehouse(self, warehouse_id: str) -> Warehouse:
        for wh in self.warehouses:
            if wh.id == warehouse_id:
                return wh
        raise KeyError(warehouse_id)


# (id, name, district, lat, lng): cold stores towards the outskirts of the 5th ring.
WAREHOUSE_SITES: tuple[tuple[str, str, str, float, float], ...] = (
    ("WH-BJ-CY-01", "快驴朝阳冷库", "朝阳区", 39.9625, 116.4980),
    ("WH-BJ-FT-01", "快驴丰台冷库", "丰台区", 39.8350, 116.2860),
    ("WH-BJ-HD-01", "快驴海淀冷库", "海淀区", 40.0300, 116.2700),
)

# (district, centre lat, centre lng, spread metres, weight, streets)
DISTRICTS: tuple[tuple[str, float, float, float, float, tuple[str, ...]], ...] = (
    ("东城区", 39.9285, 116.4160, 1800, 0.12, ("东直门内大街", "王府井大街", "东四北大街", "崇文门外大街")),
    ("西城区", 39.9120, 116.3660, 1800, 0.14, ("西单北大街", "金融大街", "德胜门外大街", "新街口外大街")),
    ("朝阳区", 39.9480, 116.4860, 3500, 0.30, ("三里屯路", "朝阳门外大街", "望京街", "建国路", "亮马桥路")),
    ("海淀区", 39.9750, 116.3150, 3200, 0.22, ("中关村大街", "学院路", "成府路", "北三环西路", "万泉河路")),
    ("丰台区", 39.8580, 116.3100, 3000, 0.14, ("丰台北路", "南三环西路", "方庄路", "马家堡东路")),
    ("石景山区", 39.9100, 116.2500, 1500, 0.08, ("石景山路", "鲁谷路", "八角西街", "古城大街")),
)

_OWNERS = ("老王", "小李", "张记", "刘家", "鑫源", "福满楼", "聚德", "金鼎", "胡同", "四合院", "京味", "蓉城",
           "长安", "老街", "阿香", "德顺", "好运来", "一品")
_KINDS = ("川味小馆", "湘菜馆", "炸酱面馆", "东北饺子馆", "粤式茶餐厅", "兰州拉面", "过桥米线", "西北菜馆",
          "江南小厨", "海鲜大排档", "烤鸭店", "火锅店", "麻辣烫", "日式料理", "韩式烤肉", "家常菜馆",
          "轻食沙拉", "包子铺")
SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何林高罗"
GIVEN = ("伟", "芳", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超",
         "秀英", "桂兰", "建国", "志强", "海燕", "国栋")
_PHONE_PREFIXES = ("138", "139", "135", "136", "137", "150", "151", "158", "159", "186", "187", "188", "133", "180")
_PLATE_CHARS = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def fake_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN)


def fake_phone(rng: random.Random) -> str:
    return rng.choice(_PHONE_PREFIXES) + "".join(rng.choice("0123456789") for _ in range(8))


def fake_plate(rng: random.Random) -> str:
    return "京A·" + "".join(rng.choice(_PLATE_CHARS) for _ in range(5))


def _warehouses(n: int) -> tuple[Warehouse, ...]:
    if not 1 <= n <= len(WAREHOUSE_SITES):
        raise ValueError(f"n_warehouses must be 1..{len(WAREHOUSE_SITES)}, got {n}")
    return tuple(
        Warehouse(wid, name, district, (lat, lng),
                  ((f"TS-{wid}-C1", "CHILLED"), (f"TS-{wid}-F1", "FROZEN")))
        for wid, name, district, lat, lng in WAREHOUSE_SITES[:n]
    )


def _restaurant(rng: random.Random, no: int, width: int, used: set[str],
                warehouses: tuple[Warehouse, ...]) -> Restaurant:
    district, lat, lng, spread, _, streets = rng.choices(DISTRICTS, weights=[d[4] for d in DISTRICTS])[0]
    location = clamp_to_city(offset_m((lat, lng), rng.gauss(0, spread), rng.gauss(0, spread)), margin=0.01)
    location = (round(location[0], 6), round(location[1], 6))
    name = rng.choice(_OWNERS) + rng.choice(_KINDS)
    branch = 2
    base = name
    while name in used:
        name = f"{base}({branch}店)"
        branch += 1
    used.add(name)
    nearest = min(warehouses, key=lambda wh: haversine_m(wh.location, location))
    address = f"北京市{district}{rng.choice(streets)}{rng.randint(1, 199)}号 {name}"
    return Restaurant(f"CUST-{no:0{width}d}", name, district, address, location,
                      rng.choice(SURNAMES) + rng.choice(("经理", "老板", "店长", "主厨")), fake_phone(rng),
                      nearest.id)


def build_city(seed: int, n_warehouses: int = 3, n_restaurants: int = 150, n_drivers: int = 30) -> City:
    """A deterministic city for ``seed``."""
    if n_restaurants < 1:
        raise ValueError("n_restaurants must be >= 1")
    warehouses = _warehouses(n_warehouses)
    if n_drivers < 2 * n_warehouses:
        raise ValueError(f"n_drivers must be >= 2 per warehouse ({2 * n_warehouses}), got {n_drivers}")
    rng = random.Random(f"kuailv-city:{seed}")
    width = max(4, len(str(n_restaurants)))
    used: set[str] = set()
    restaurants = tuple(_restaurant(rng, i, width, used, warehouses) for i in range(1, n_restaurants + 1))
    homes = _driver_homes(warehouses, restaurants, n_drivers)
    dwidth = max(3, len(str(n_drivers)))
    drivers = []
    for i, home in enumerate(homes, start=1):
        num = f"{i:0{dwidth}d}"
        drivers.append(Driver(f"DRV-{num}", fake_name(rng), fake_phone(rng), f"VAN-{num}", fake_plate(rng),
                              f"TS-VAN-{num}", home))
    return City(warehouses, restaurants, tuple(drivers))


def _driver_homes(warehouses: tuple[Warehouse, ...], restaurants: tuple[Restaurant, ...], n: int) -> list[str]:
    """Depot of each driver: two per depot, the rest in proportion to the customers each serves."""
    served = [sum(r.warehouse_id == wh.id for r in restaurants) for wh in warehouses]
    spare = n - 2 * len(warehouses)
    shares = [spare * c / len(restaurants) for c in served]
    counts = [2 + int(x) for x in shares]
    by_remainder = sorted(range(len(warehouses)), key=lambda i: (-(shares[i] - int(shares[i])), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    pools = [[wh.id] * c for wh, c in zip(warehouses, counts, strict=True)]
    homes: list[str] = []
    while any(pools):  # interleave depots across driver ids
        homes.extend(pool.pop() for pool in pools if pool)
    return homes
