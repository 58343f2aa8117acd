"""Score shared_inbox.mail.quotes.split_reply on discourse's email_reply_trimmer corpus.

Run from the project root::

    python3 benchmarks/quote_trimming.py

The corpus lives outside the project (``../shared/corpus/email_reply_trimmer``) and is read in
place.  An email counts as a success when ``split_reply(email).reply`` equals the expected
``trimmed/<name>.txt`` after collapsing every run of whitespace to one space and stripping.
"""
from __future__ import annotations

import difflib
import re
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "email_reply_trimmer"

if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from shared_inbox.mail.quotes import split_reply  # noqa: E402

_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    return _WS.sub(" ", text).strip()


def read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def load_cases(corpus: Path = CORPUS) -> list[tuple[str, str, str]]:
    """(name, email text, expected trimmed text) for every email with an expectation."""
    cases = []
    for email in sorted((corpus / "emails").glob("*.txt")):
        expected = corpus / "trimmed" / email.name
        if expected.exists():
            cases.append((email.name, read_text(email), read_text(expected)))
    return cases


def score(cases: list[tuple[str, str, str]]) -> tuple[int, list[tuple[str, str, str]]]:
    """(number of exact matches, failures as (name, got, expected))."""
    failures = []
    for name, text, expected in cases:
        got = split_reply(text).reply
        if normalize(got) != normalize(expected):
            failures.append((name, got, expected))
    return len(cases) - len(failures), failures


def time_per_email(cases: list[tuple[str, str, str]], rounds: int = 20) -> float:
    """Mean seconds per split_reply call over ``rounds`` passes over the corpus."""
    split_reply(cases[0][1])  # warm up
    start = time.perf_counter()
    for _ in range(rounds):
        for _name, text, _expected in cases:
            split_reply(text)
    return (time.perf_counter() - start) / (rounds * len(cases))


def short_diff(got: str, expected: str, limit: int = 12) -> str:
    diff = difflib.unified_diff(
        expected.strip().splitlines(), got.strip().splitlines(),
        fromfile="expected", tofile="got", lineterm="", n=1,
    )
    lines = list(diff)
    if len(lines) > limit:
        lines = lines[:limit] + [f"... ({len(lines) - limit} more diff lines)"]
    return "\n".join("    " + line[:120] for line in lines)


def main() -> int:
    if not (CORPUS / "emails").is_dir():
        print(f"corpus not found at {CORPUS}")
        return 1
    cases = load_cases()
    passed, failures = score(cases)
    rounds = 20
    per_email = time_per_email(cases, rounds)

    print(f"quote trimming: {passed}/{len(cases)} exact (whitespace-normalized)")
    if failures:
        print("failing:")
        for name, got, expected in failures:
            print(f"  {name}")
            print(short_diff(got, expected))
    else:
        print("failing: none")
    print(f"time per email: {per_email * 1000:.3f} ms (mean over {rounds} rounds of {len(cases)})")
    print_scaling(cases)
    return 0


def print_scaling(cases) -> None:
    """Linear time on huge bodies: the corpus' lines repeated to 10k and 100k lines."""
    import time

    from shared_inbox.mail.quotes import split_reply

    lines = [line for _name, text, _expected in cases for line in text.splitlines()]
    timings = {}
    for n in (10_000, 100_000):
        doc = "\n".join((lines * (n // len(lines) + 1))[:n])
        start = time.perf_counter()
        split_reply(doc)
        timings[n] = time.perf_counter() - start
        print(f"{n:>7} lines: {timings[n]:.3f} s")
    print(f"100k/10k time ratio: {timings[100_000] / timings[10_000]:.1f} (linear is about 10)")


if __name__ == "__main__":
    sys.exit(main())
