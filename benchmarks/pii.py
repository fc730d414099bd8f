"""Quality and speed of flujo-governance's PII engines, regex and presidio, in one run.

Quality: per entity kind, on the public benchmark of flujo-governance's tests
(``tests/gov_public_corpus.py``: Presidio's recognizer tests, the IBAN registry samples,
libphonenumber's example numbers, RFC IPv6 examples; a dev split and a held-out split), the
recall (the value is fully covered by findings of its kind), the exact-span count, the
precision, and the cross-type false positives (findings on text labelled as another kind or
as a decoy: MAC addresses, national ids, invalid IBANs, ISBNs...). Both engines run at their
shipped defaults (presidio: blank spaCy pipeline, ``score_threshold`` 0.5 with its per-kind
thresholds). Also the share of PII removed and of non-sensitive tokens kept on the older
sentence corpus (``tests/gov_corpus.py``).

Speed: documents are ~1 KB messages built from that sentence corpus: *dense* ones are made
only of corpus sentences (PII of every kind mixed with dates, amounts, versions and ids),
*sparse* ones are plain prose with one corpus sentence. For each engine it prints the
throughput (MB/s, best of 3 passes over all documents, scrubbing included) and the p50 / p95
latency of one document. Target (issue #15): regex at least 20x Presidio's throughput.
Presidio is measured when the ``presidio`` extra is installed (no download), and skipped
with a note otherwise.

    python benchmarks/pii.py [--docs 400] [--presidio-docs 40] [--misses]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "packages" / "flujo-governance"
sys.path.insert(0, str(PACKAGE / "tests"))  # the labelled corpus
if importlib.util.find_spec("flujo_governance") is None:  # e.g. `nox -s bench`: core only
    sys.path.insert(0, str(PACKAGE / "src"))

from gov_corpus import NEGATIVES, POSITIVES  # noqa: E402
from gov_public_corpus import KINDS, KindScore, evaluate, split  # noqa: E402

from flujo_governance.engines.base import PIIEngine  # noqa: E402
from flujo_governance.scrubber import Scrubber, redact_placeholder  # noqa: E402

_PROSE = tuple(
    re.findall(
        r"\w+",
        "the customer asked whether the refund had been processed and we explained that the "
        "request was still with the billing team who review every case within two working "
        "days before the money goes back to the original payment method and an update is sent",
    )
)


def documents(count: int, size: int = 1024, seed: int = 7, *, dense: bool = True) -> list[str]:
    """``count`` documents of about ``size`` bytes. Dense: only corpus sentences (PII and
    look-alikes everywhere). Sparse: plain prose with one corpus sentence per document."""
    rng = random.Random(seed)
    sentences = [s for _, _, s in POSITIVES] + [s for _, _, s in NEGATIVES]
    docs = []
    for _ in range(count):
        parts: list[str] = [] if dense else [rng.choice(sentences)]
        while sum(len(p) + 1 for p in parts) < size:
            if dense:
                parts.append(rng.choice(sentences))
            else:
                parts.append(" ".join(rng.choice(_PROSE) for _ in range(12)) + ".")
        rng.shuffle(parts)
        docs.append(" ".join(parts))
    return docs


def measure(engine: PIIEngine, docs: list[str], rounds: int = 3) -> tuple[float, float, float]:
    """(MB/s of the best of ``rounds`` passes over ``docs``, p50 and p95 ms per document)."""
    scrubber = Scrubber(engine)
    scrubber.text(docs[0], redact_placeholder)  # warm-up (lazy compilation, model load)
    latencies = []
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for doc in docs:
            t0 = time.perf_counter()
            scrubber.text(doc, redact_placeholder)
            latencies.append(time.perf_counter() - t0)
        best = min(best, time.perf_counter() - start)
    elapsed = best
    size_mb = sum(len(d.encode()) for d in docs) / 1e6
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    return size_mb / elapsed, statistics.median(latencies) * 1e3, p95 * 1e3


def corpus_rates(engine: PIIEngine) -> tuple[float, float]:
    scrubber = Scrubber(engine)

    def scrub(text: str) -> str:
        return scrubber.text(text, redact_placeholder)

    removed = sum(value not in scrub(sentence) for _, value, sentence in POSITIVES)
    survived = sum(token in scrub(sentence) for _, token, sentence in NEGATIVES)
    return removed / len(POSITIVES), survived / len(NEGATIVES)


def quality(engines: list[tuple[str, PIIEngine, int]], *, misses: bool) -> None:
    """Per-kind figures of each engine on both splits of the public benchmark."""
    for part in ("dev", "heldout"):
        cases = split(part)
        scores: dict[str, dict[str, KindScore]] = {}
        for name, engine, _ in engines:
            scores[name] = evaluate(
                lambda text, e=engine: [(f.kind, f.start, f.end) for f in e.find(text)], cases
            )
        print(f"\npublic benchmark, {part} split ({len(cases)} texts):")
        header = "".join(f"{name + ' R / exact / P / cross':>34}" for name, _, _ in engines)
        print(f"{'kind':<12}{'gold':>5}{header}")
        for kind in KINDS:
            row = f"{kind:<12}{scores[engines[0][0]][kind].gold:>5}"
            for name, _, _ in engines:
                s = scores[name][kind]
                row += f"{s.recall:>13.3f}{s.exact:>6}{s.precision:>9.3f}{s.cross:>6}"
            print(row)
        if misses:
            for name, _, _ in engines:
                for kind, s in scores[name].items():
                    for text in s.misses:
                        print(f"  {name} missed {kind}: {text!r}")
                    for example in s.cross_examples:
                        print(f"  {name} {kind} on {example}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400, help="documents for the regex engine")
    parser.add_argument("--presidio-docs", type=int, default=40, help="documents for presidio")
    parser.add_argument("--misses", action="store_true", help="list misses and false positives")
    args = parser.parse_args()

    from flujo_governance.engines.regex import RegexEngine

    engines: list[tuple[str, PIIEngine, int]] = [("regex", RegexEngine(), args.docs)]
    if all(importlib.util.find_spec(m) for m in ("presidio_analyzer", "spacy")):
        from flujo_governance.engines.presidio import PresidioEngine

        t0 = time.perf_counter()
        presidio = PresidioEngine()  # the shipped defaults
        print(f"presidio engine loaded in {time.perf_counter() - t0:.2f} s (blank spaCy 'en')")
        engines.append(("presidio", presidio, args.presidio_docs))
    else:
        print("presidio: not installed (pip install 'flujo-governance[presidio]'); skipped")

    quality(engines, misses=args.misses)
    print()

    print(f"corpus: {len(POSITIVES)} PII values, {len(NEGATIVES)} non-sensitive tokens")
    print(f"{'engine':<10}{'docs':<8}{'MB/s':>8}{'p50 ms/KB':>11}{'p95 ms/KB':>11}"
          f"{'PII removed':>13}{'tokens kept':>13}")  # fmt: skip
    throughput: dict[tuple[str, str], float] = {}
    medians: dict[tuple[str, str], float] = {}
    for name, engine, count in engines:
        removed, kept = corpus_rates(engine)
        # The fast engine's passes are short, so the machine's other load shows more in them:
        # more passes, of which the best counts (load only ever slows a pass down).
        rounds = 7 if name == "regex" else 3
        for kind in ("dense", "sparse"):
            docs = documents(count, dense=kind == "dense")
            mbps, p50, p95 = measure(engine, docs, rounds)
            throughput[name, kind] = mbps
            medians[name, kind] = p50
            print(f"{name:<10}{kind:<8}{mbps:>8.2f}{p50:>11.3f}{p95:>11.3f}"
                  f"{removed:>13.1%}{kept:>13.1%}")  # fmt: skip
    if ("presidio", "dense") in throughput:
        for kind in ("dense", "sparse"):
            ratio = throughput["regex", kind] / throughput["presidio", kind]
            p50 = medians["presidio", kind] / medians["regex", kind]
            print(
                f"regex / presidio throughput, {kind} documents: {ratio:.0f}x (target >= 20x); "
                f"p50 latency ratio {p50:.0f}x"
            )


if __name__ == "__main__":
    main()
