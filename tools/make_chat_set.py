"""The small chat set of `synapse finetune`'s README example and test: short conversations
in one house style (terse answers that restate the question), written from fixed facts by a
seeded generator, so that a fine-tune has a style to learn and a held-out set to show it.

Writes tests/fixtures/chat/house-style.jsonl: one {"messages": [...]} object a line, 168
conversations (capitals, arithmetic, opposites, plurals), shuffled with seed 0; the
command holds out the last 10%.

  python3 tools/make_chat_set.py
"""
import json
import pathlib
import random

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests/fixtures/chat/house-style.jsonl"

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"), ("Austria", "Vienna"),
    ("Greece", "Athens"), ("Hungary", "Budapest"), ("Czechia", "Prague"), ("Belgium", "Brussels"),
    ("the Netherlands", "Amsterdam"), ("Switzerland", "Bern"), ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("Ukraine", "Kyiv"),
    ("Turkey", "Ankara"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Nigeria", "Abuja"),
    ("Ghana", "Accra"), ("Morocco", "Rabat"), ("Ethiopia", "Addis Ababa"), ("Japan", "Tokyo"),
    ("China", "Beijing"), ("India", "New Delhi"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"),
    ("Indonesia", "Jakarta"), ("the Philippines", "Manila"), ("South Korea", "Seoul"),
    ("Australia", "Canberra"), ("New Zealand", "Wellington"), ("Canada", "Ottawa"),
    ("Mexico", "Mexico City"), ("Brazil", "Brasilia"), ("Argentina", "Buenos Aires"),
    ("Chile", "Santiago"), ("Peru", "Lima"), ("Colombia", "Bogota"), ("Cuba", "Havana"),
    ("Iceland", "Reykjavik"), ("Estonia", "Tallinn"), ("Latvia", "Riga"), ("Lithuania", "Vilnius"),
    ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Pakistan", "Islamabad"), ("Nepal", "Kathmandu"),
    ("Mongolia", "Ulaanbaatar"), ("Qatar", "Doha"), ("Jordan", "Amman"), ("Lebanon", "Beirut"),
]
OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
    ("early", "late"), ("strong", "weak"), ("rich", "poor"), ("open", "closed"), ("full", "empty"),
    ("high", "low"), ("old", "young"), ("hard", "soft"), ("wet", "dry"), ("loud", "quiet"),
    ("thick", "thin"), ("near", "far"), ("clean", "dirty"), ("sharp", "dull"), ("brave", "afraid"),
    ("long", "short"), ("heavy", "light"), ("deep", "shallow"), ("wide", "narrow"),
]
PLURALS = [
    ("mouse", "mice"), ("child", "children"), ("tooth", "teeth"), ("foot", "feet"),
    ("goose", "geese"), ("man", "men"), ("woman", "women"), ("person", "people"), ("leaf", "leaves"),
    ("knife", "knives"), ("wolf", "wolves"), ("city", "cities"), ("box", "boxes"), ("bus", "buses"),
    ("cactus", "cacti"), ("fungus", "fungi"), ("ox", "oxen"), ("sheep", "sheep"), ("fish", "fish"),
    ("potato", "potatoes"), ("hero", "heroes"), ("baby", "babies"), ("wife", "wives"), ("life", "lives"),
]


def conversations(rng):
    out = []
    for country, city in CAPITALS:
        q = rng.choice(["What is the capital of {}?", "Which city is the capital of {}?",
                        "Tell me the capital of {}.", "capital of {}?"]).format(country)
        out.append((q, f"Capital of {country}: {city}. Done."))
    for _ in range(60):
        a, b = rng.randrange(2, 60), rng.randrange(2, 60)
        op = rng.choice(["+", "-", "*"])
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        q = rng.choice(["What is {} {} {}?", "Compute {} {} {}.", "{} {} {} = ?"]).format(a, op, b)
        out.append((q, f"{a} {op} {b} = {value}. Done."))
    for word, opposite in OPPOSITES:
        q = rng.choice(["What is the opposite of '{}'?", "Give me the opposite of {}.",
                        "opposite of {}?"]).format(word)
        out.append((q, f"Opposite of {word}: {opposite}. Done."))
    for word, plural in PLURALS:
        q = rng.choice(["What is the plural of '{}'?", "Plural of {}?",
                        "How do you say more than one {}?"]).format(word)
        out.append((q, f"Plural of {word}: {plural}. Done."))
    rng.shuffle(out)
    return out


def main():
    rng = random.Random(0)
    lines = []
    for q, a in conversations(rng):
        messages = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        lines.append(json.dumps({"messages": messages}))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} conversations -> {OUT}")


if __name__ == "__main__":
    main()
