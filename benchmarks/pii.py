"""Throughput and latency of flujo-governance's PII engines, regex and presidio, in one run.

Documents are ~1 KB messages built from the labelled corpus of flujo-governance's tests:
*dense* ones are made only of corpus sentences (PII of every kind mixed with dates, amounts,
versions and ids), *sparse* ones are plain prose with one corpus sentence. For each engine it
prints the throughput (MB/s, best of 3 passes over all documents, scrubbing included), the
p50 / p95 latency of one document, and the engine's figures on the labelled corpus (share of
PII removed, share of non-sensitive tokens that survive). Target (issue #4): regex at least
20x Presidio's throughput. Presidio is measured when the ``presidio`` extra is installed
(blank spaCy pipeline, no download), and skipped with a note otherwise.

    python benchmarks/pii.py [--docs 400] [--presidio-docs 40]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400, help="documents for the regex engine")
    parser.add_argument("--presidio-docs", type=int, default=40, help="documents for presidio")
    args = parser.parse_args()

    from flujo_governance.engines.regex import RegexEngine

    engines: list[tuple[str, PIIEngine, int]] = [("regex", RegexEngine(), args.docs)]
    if all(importlib.util.find_spec(m) for m in ("presidio_analyzer", "spacy")):
        from flujo_governance.engines.presidio import PresidioEngine

        t0 = time.perf_counter()
        presidio = PresidioEngine(score_threshold=0.0)
        print(f"presidio engine loaded in {time.perf_counter() - t0:.2f} s (blank spaCy 'en')")
        engines.append(("presidio", presidio, args.presidio_docs))
    else:
        print("presidio: not installed (pip install 'flujo-governance[presidio]'); skipped")

    print(f"corpus: {len(POSITIVES)} PII values, {len(NEGATIVES)} non-sensitive tokens")
    print(f"{'engine':<10}{'docs':<8}{'MB/s':>8}{'p50 ms/KB':>11}{'p95 ms/KB':>11}"
          f"{'PII removed':>13}{'tokens kept':>13}")  # fmt: skip
    throughput: dict[tuple[str, str], float] = {}
    for name, engine, count in engines:
        removed, kept = corpus_rates(engine)
        for kind in ("dense", "sparse"):
            mbps, p50, p95 = measure(engine, documents(count, dense=kind == "dense"))
            throughput[name, kind] = mbps
            print(f"{name:<10}{kind:<8}{mbps:>8.2f}{p50:>11.3f}{p95:>11.3f}"
                  f"{removed:>13.1%}{kept:>13.1%}")  # fmt: skip
    if ("presidio", "dense") in throughput:
        for kind in ("dense", "sparse"):
            ratio = throughput["regex", kind] / throughput["presidio", kind]
            print(f"regex / presidio throughput, {kind} documents: {ratio:.0f}x (target >= 20x)")


if __name__ == "__main__":
    main()
