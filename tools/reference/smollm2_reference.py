"""Shared by make_llamacpp_fixtures.py and make_transformers_fixtures.py: the prompts of
tests/fixtures/smollm2-q4_1/, the prompt positions whose logits are recorded, and the JSON layout.

The prompts are plain text, ChatML chats, code, numbers, several languages and two long contexts
(a 592-token code file and a 1659-token multi-turn chat). Everything is written out here or built by
deterministic loops (no randomness from the platform, no network), so every run produces the same texts.
"""
import json

import numpy as np

# Logit positions per prompt. The distance of an 8-bit path to transformers at one position depends
# on where its activation roundings happen to fall: perturbing the embeddings by 1e-7 (relative) moves
# the mean over 5 positions of the Japanese prompt between 0.24 and 0.57, but the mean over all 92
# positions only between 0.29 and 0.35 (smollm2_rounding_spread.py). So every position of prompts up
# to this length, and as many evenly spread ones of longer prompts.
MAX_POSITIONS = 64


def logit_positions(n):
    """`MAX_POSITIONS` prompt positions (all of a shorter prompt), evenly spread, ending at the last."""
    k = min(n, MAX_POSITIONS)
    return sorted({(n - 1) * i // k for i in range(1, k + 1)})


def f32(x):
    """`x` as the shortest decimal that reads back as the same float32 (half the digits of a double's)."""
    return float(str(np.float32(x)))


def top_k(logits, k=10):
    """The `k` highest logits as [id, logit], ties to the lowest id."""
    order = np.argsort(-logits, kind="stable")[:k]
    return [[int(i), f32(logits[i])] for i in order]


def write_json(doc, path):
    """One line per top-level key and per prompt field: compact, yet small diffs on regeneration."""
    def compact(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    def obj(d, indent):
        return "{\n" + ",\n".join(f"{indent}{compact(k)}: {v}" for k, v in d.items()) + "\n}"

    prompts = "[\n" + ",\n".join(obj({k: compact(v) for k, v in p.items()}, " ") for p in doc["prompts"]) + "\n]"
    text = obj({k: (prompts if k == "prompts" else compact(v)) for k, v in doc.items()}, "") + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    with open(path, encoding="utf-8") as f:
        json.load(f)  # the layout above must stay valid JSON


def chatml(turns, open_assistant=True):
    """SmolLM2's chat template: `<|im_start|>role\\ncontent<|im_end|>\\n` per turn."""
    text = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns)
    return text + ("<|im_start|>assistant\n" if open_assistant else "")


SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

LONG_CODE = '''"""A small inventory service: items, stock movements and a report."""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from typing import Iterable


@dataclasses.dataclass(frozen=True)
class Item:
    sku: str
    name: str
    unit_price_cents: int
    reorder_level: int = 10


@dataclasses.dataclass
class Movement:
    sku: str
    quantity: int  # positive: received, negative: shipped
    when: dt.date
    note: str = ""


class InventoryError(Exception):
    """Raised when a movement would make the stock negative or names an unknown item."""


class Inventory:
    def __init__(self, items: Iterable[Item]):
        self._items = {item.sku: item for item in items}
        self._stock: dict[str, int] = defaultdict(int)
        self._history: list[Movement] = []

    def record(self, movement: Movement) -> None:
        if movement.sku not in self._items:
            raise InventoryError(f"unknown sku {movement.sku!r}")
        new_level = self._stock[movement.sku] + movement.quantity
        if new_level < 0:
            raise InventoryError(
                f"{movement.sku}: cannot ship {-movement.quantity}, only {self._stock[movement.sku]} left"
            )
        self._stock[movement.sku] = new_level
        self._history.append(movement)

    def level(self, sku: str) -> int:
        return self._stock[sku]

    def value_cents(self) -> int:
        return sum(self._items[sku].unit_price_cents * qty for sku, qty in self._stock.items())

    def report(self) -> str:
        lines = [f"{'sku':8} {'name':24} {'stock':>6} {'value':>10}"]
        for sku in sorted(self._items):
            item = self._items[sku]
            value = item.unit_price_cents * self._stock[sku] / 100
            lines.append(f"{sku:8} {item.name:24} {self._stock[sku]:6d} {value:10.2f}")
        lines.append(f"total value: {self.value_cents() / 100:.2f}")
        return "\\n".join(lines)


def demo() -> str:
    inventory = Inventory(
'''


def weather_table():
    """A 24-row CSV of made-up station readings from a fixed linear congruential generator."""
    stations = ["Oslo", "Lyon", "Porto", "Graz", "Turku", "Cork", "Brno", "Bari"]
    state = 20240611
    rows = ["date,station,min_c,max_c,rain_mm"]
    for i in range(24):
        state = (1103515245 * state + 12345) % 2**31
        lo = 4 + state % 11
        hi = lo + 3 + (state >> 8) % 9
        rain = (state >> 16) % 23
        rows.append(f"2024-06-{1 + i // 8:02d},{stations[i % 8]},{lo},{hi},{rain / 2:.1f}")
    return "\n".join(rows)


LONG_CHAT_TURNS = [
    ("system", SYSTEM),
    ("user", "Hi! I'm planning a two-week trip through Europe by train next June. Can you help me organise it?"),
    ("assistant", "Of course! A train trip is a great way to see Europe. To plan well I need a few details: which "
                  "countries or cities interest you most, what your rough budget is, whether you prefer cities, "
                  "nature or a mix, and how many nights you would like to stay in each place. Once I know that, I "
                  "can suggest a route, the main connections and what to book in advance."),
    ("user", "I'd like a mix of cities and nature. I was thinking of starting in Paris and ending somewhere in "
             "Italy. My budget is moderate, maybe 120 euros a day without the train tickets. I don't want to "
             "change hotels every night, three nights per place sounds right."),
    ("assistant", "Three nights per place gives you about four or five stops in two weeks. Here is one route that "
                  "mixes cities and nature:\n\n1. Paris (3 nights): museums, the Seine, Montmartre.\n2. Lyon "
                  "(3 nights): food, the old town, an easy day trip into the Beaujolais hills.\n3. Annecy or "
                  "Chamonix (3 nights): lakes and mountains, good walking in June.\n4. Turin (2 nights): "
                  "arcades, cafés and the Egyptian Museum.\n5. Florence or the Cinque Terre (3 nights): art or "
                  "coastal hiking, depending on what you prefer.\n\nAll legs are under five hours by train. The "
                  "high-speed trains between Paris and Lyon and between Turin and Florence are cheapest when you "
                  "book two to three months ahead."),
    ("user", "That sounds lovely. How does the weather look in June? I found some readings from last year, "
             "does this look typical?\n\n" + weather_table()),
    ("assistant", "Yes, that looks fairly typical for early June. Most days stay mild, with minimum temperatures "
                  "between about 4 and 14 degrees and maximum temperatures mostly between 10 and 25 degrees. Rain "
                  "comes in short showers rather than long wet spells: several days are dry, and the wettest "
                  "readings are around ten millimetres. For your route this means light layers, a rain jacket "
                  "and good walking shoes. The Alps can be cool in the evenings, so bring a warm sweater for "
                  "Annecy or Chamonix. Southern stops such as Florence will be warmer than these northern "
                  "stations, often above 28 degrees in the afternoon."),
    ("user", "Good to know. What about money: should I buy a rail pass or single tickets?"),
    ("assistant", "For five or six journeys a pass is rarely cheaper than single tickets bought early, because the "
                  "French and Italian high-speed trains charge a reservation fee on top of the pass. A rough "
                  "comparison:\n\n- Single tickets booked two months ahead: Paris to Lyon from 30 euros, Lyon to "
                  "Annecy about 25 euros, Annecy to Turin about 45 euros with one change, Turin to Florence from "
                  "25 euros.\n- A seven-day flexible pass costs around 300 euros, plus 10 to 35 euros of "
                  "reservations per high-speed train.\n\nSo single tickets come to roughly 125 to 180 euros in "
                  "total, while the pass would be above 350 euros. The pass only pays off if you want complete "
                  "flexibility or many more journeys."),
    ("user", "Great, single tickets then. Can you suggest a day-by-day outline with one highlight per day?"),
    ("assistant", "Here is a day-by-day outline:\n\nDay 1: arrive in Paris, evening walk along the Seine.\nDay 2: "
                  "the Louvre in the morning, the Marais in the afternoon.\nDay 3: Montmartre and the view from "
                  "Sacré-Cœur.\nDay 4: train to Lyon, dinner in a traditional bouchon.\nDay 5: the old town and "
                  "the traboules, the hidden passages between buildings.\nDay 6: day trip to the Beaujolais "
                  "villages.\nDay 7: train to Annecy, a boat tour on the lake.\nDay 8: hike to the Col de la "
                  "Forclaz or cycle around the lake.\nDay 9: cable car from Chamonix to the Aiguille du Midi.\n"
                  "Day 10: train to Turin through the Fréjus tunnel.\nDay 11: the Egyptian Museum and a coffee "
                  "in one of the historic cafés.\nDay 12: train to Florence, sunset at Piazzale Michelangelo.\n"
                  "Day 13: the Uffizi Gallery and the cathedral dome.\nDay 14: a last morning market visit and "
                  "your journey home."),
    ("user", "Perfect. One last question: what should I pack, given that I only want to carry a backpack?"),
]

PROMPTS = [
    {"name": "plain", "text": "The capital of France is"},
    {"name": "story", "text": "Once upon a time, in a small village at the edge of a great forest, there lived an "
                              "old clockmaker who had never left his workshop. Every morning he"},
    {"name": "code", "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
    {"name": "code_rust", "text": "fn main() {\n    let numbers = vec![3, 1, 4, 1, 5, 9, 2, 6];\n"
                                  "    let total: i32 = numbers.iter().sum();\n"
                                  "    println!(\"sum = {}\", total);\n    let largest ="},
    {"name": "chat", "text": chatml([("system", SYSTEM), ("user", "What is 2+2? Answer briefly.")])},
    {"name": "chat_multi", "text": chatml([
        ("system", SYSTEM),
        ("user", "Give me a synonym for happy."),
        ("assistant", "Joyful."),
        ("user", "And one for sad? Then use both words in a single sentence."),
    ])},
    {"name": "arithmetic", "text": "Question: What is 48 + 76?\nAnswer: 48 + 76 = 124.\n"
                                   "Question: What is 135 - 59?\nAnswer: 135 - 59 = 76.\n"
                                   "Question: What is 12 * 13?\nAnswer: 12 * 13 ="},
    {"name": "numbers", "text": "Pi is approximately 3.14159265, e is approximately 2.71828183, and in 1969 "
                                "the population of the world was about 3,600,000,000. Twenty years later it was"},
    {"name": "unicode", "text": "Café au lait, crème brûlée et 12 345 €: ça coûte cher! 日本語のテキスト 😀  \t  1234567"},
    {"name": "french", "text": "La Révolution française commence en 1789 avec la prise de la Bastille. Elle met "
                               "fin à la monarchie absolue et proclame les droits de l'homme. Les historiens "
                               "considèrent que"},
    {"name": "german", "text": "Die Donau ist nach der Wolga der zweitlängste Fluss Europas. Sie entspringt im "
                               "Schwarzwald und mündet nach fast dreitausend Kilometern ins Schwarze Meer. "
                               "Unterwegs fließt sie durch"},
    {"name": "chinese", "text": "长城是中国古代的军事防御工程，东起山海关，西至嘉峪关，全长两万多公里。"
                                "它不仅是世界上最伟大的建筑之一，而且"},
    {"name": "japanese", "text": "富士山は日本で最も高い山で、標高は三七七六メートルです。毎年夏になると、"
                                 "多くの登山者が山頂を目指して"},
    {"name": "russian", "text": "Лев Толстой родился в 1828 году в Ясной Поляне. Его роман «Война и мир» "
                                "считается одним из величайших произведений мировой литературы, потому что"},
    {"name": "long_code", "text": LONG_CODE},
    {"name": "long_chat", "text": chatml(LONG_CHAT_TURNS)},
]
