"""Generated (seeded) PII and look-alikes, to check the engine beyond the hand-written corpus.

``generate(seed, n)`` returns ``(positives, negatives)`` in the corpus format: random valid
cards (Luhn computed), IBANs (mod-97 computed), SSNs, IPs, e-mails, phones in many formats and
secrets; negatives are random dates, times, amounts, versions, ids and numbers that fail their
checksum.
"""

from __future__ import annotations

import random
import string

from flujo_governance.engines.regex import iban_valid, luhn_valid

CONTEXTS = [
    "Please note: {v}.",
    "{v}",
    "the value ({v}) was updated",
    "Re: {v} — thanks!",
    '{{"field": "{v}"}}',
    "see {v}, then continue",
]


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for d in string.digits:
        if luhn_valid(body + d):
            return body + d
    raise AssertionError("unreachable")


def _luhn_broken(number: str) -> str:
    last = (int(number[-1]) + 1) % 10
    return number[:-1] + str(last)


def _group(number: str, sizes: list[int], sep: str) -> str:
    parts, i = [], 0
    for size in sizes:
        parts.append(number[i : i + size])
        i += size
    if i < len(number):
        parts.append(number[i:])
    return sep.join(parts)


def _iban(rng: random.Random) -> str:
    country, length = rng.choice([("DE", 22), ("GB", 22), ("FR", 27), ("ES", 24), ("NL", 18)])
    if country == "GB" or country == "NL":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
        bban += "".join(rng.choice(string.digits) for _ in range(length - 8))
    else:
        bban = "".join(rng.choice(string.digits) for _ in range(length - 4))
    rearranged = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in rearranged)) % 97
    iban = f"{country}{check:02d}{bban}"
    assert iban_valid(iban)
    return iban


Labelled = list[tuple[str, str, str]]


def generate(seed: int = 1, n: int = 40) -> tuple[Labelled, Labelled]:
    """``n`` rounds of positives (11 per round) and negatives (6 per round), seeded."""
    rng = random.Random(seed)
    pos: list[tuple[str, str, str]] = []
    neg: list[tuple[str, str, str]] = []

    def add(target: list[tuple[str, str, str]], kind: str, value: str) -> None:
        target.append((kind, value, rng.choice(CONTEXTS).format(v=value)))

    digits = string.digits
    for _ in range(n):
        prefix, length, sizes = rng.choice(
            [("4", 16, [4, 4, 4, 4]), ("51", 16, [4, 4, 4, 4]), ("37", 15, [4, 6, 5]),
             ("6011", 16, [4, 4, 4, 4]), ("35", 16, [4, 4, 4, 4]), ("2221", 16, [4, 4, 4, 4])]
        )  # fmt: skip
        card = _luhn_complete(prefix, length, rng)
        sep = rng.choice(["", " ", "-"])
        add(pos, "CREDIT_CARD", _group(card, sizes, sep) if sep else card)
        broken = _luhn_broken(card)
        add(neg, "invalid_card", _group(broken, sizes, sep) if sep else broken)

        iban = _iban(rng)
        add(pos, "IBAN", iban if rng.random() < 0.5 else _group(iban, [4] * 8, " "))

        area = rng.choice([a for a in range(1, 900) if a != 666])
        add(pos, "US_SSN", f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}")

        add(pos, "IP_ADDRESS", ".".join(str(rng.randint(1, 254)) for _ in range(4)))
        groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
        add(pos, "IP_ADDRESS", ":".join(groups))

        user = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10)))
        user += rng.choice(["", ".", "_", "+"]) + "".join(rng.choice(digits) for _ in range(2))
        domain = rng.choice(["example.com", "mail.co.uk", "corp-x.io", "uni.edu", "web.de"])
        add(pos, "EMAIL", f"{user}@{domain}")

        a, b, c = rng.randint(200, 999), rng.randint(200, 999), rng.randint(0, 9999)
        phone = rng.choice(
            [f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}", f"+1 {a} {b} {c:04d}",
             f"+44 20 {b}{c % 10} {c:04d}", f"+49 30 {b}{c:04d}",
             f"0{a % 5 + 1} {b % 100:02d} {c // 100:02d} {c % 100:02d} 00",
             f"+33 6 {a % 100:02d} {b % 100:02d} {c % 100:02d} {rng.randint(10, 99)}",
             f"+1-{a}-{b}-{c:04d}"]
        )  # fmt: skip
        add(pos, "PHONE", phone)

        upper = string.ascii_uppercase + digits
        add(pos, "AWS_KEY", "AKIA" + "".join(rng.choice(upper) for _ in range(16)))
        alnum = string.ascii_letters + digits
        add(pos, "GITHUB_TOKEN", "ghp_" + "".join(rng.choice(alnum) for _ in range(36)))
        add(pos, "API_KEY", "sk-" + "".join(rng.choice(alnum) for _ in range(48)))
        pw = "".join(rng.choice(alnum + "!@#%") for _ in range(rng.randint(6, 16)))
        key = rng.choice(["password", "api_key", "DB_PASSWORD", "secret", "access_token"])
        assignment = f"{key}={pw}" if rng.random() < 0.5 else f'"{key}": "{pw}"'
        pos.append(("SECRET", pw, rng.choice(CONTEXTS).format(v=assignment)))

        y, mo, d = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
        dates = [f"{y}-{mo:02d}-{d:02d}", f"{d:02d}/{mo:02d}/{y}", f"{d:02d}.{mo:02d}.{y}"]
        add(neg, "date", rng.choice([*dates, f"{mo}/{d}/{y % 100:02d}"]))
        h, mi, sec = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
        add(neg, "time", f"{h:02d}:{mi:02d}:{sec:02d}")
        cents = rng.randint(0, 99)
        amounts = [
            f"${rng.randint(1, 99999):,}.{cents:02d}",
            f"{rng.randint(1, 9999)},{cents:02d} €",
        ]
        add(neg, "amount", rng.choice([*amounts, f"USD {rng.randint(1, 10**6):,}"]))
        add(neg, "version", f"{rng.randint(0, 30)}.{rng.randint(0, 30)}.{rng.randint(0, 300)}")
        ids = [f"ORD-{y}-{rng.randint(0, 999999):06d}", f"#{rng.randint(10**5, 10**9)}"]
        ids += [f"INV-{rng.randint(1, 99999):05d}", f"ticket {rng.randint(1000, 99999)}"]
        add(neg, "id", rng.choice(ids))
    return pos, neg
