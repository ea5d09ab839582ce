"""Cleaning training data: answers, text noise, duplicates, and benchmark contamination.

`preprocess(records, benchmarks=...)` runs the whole pass and returns a `PreprocessReport`
that counts every row it dropped and why, so nothing disappears silently:

1. answers: a row keeps its answer field, else GSM8K's "#### N", else the last \\boxed{} of
   its solution; rows with none are dropped;
2. text: Unicode NFKC, whitespace runs, \\dfrac/\\tfrac -> \\frac, stray \\! spacing;
3. exact duplicates: same problem after lower-casing and dropping punctuation/spacing;
4. near duplicates: MinHash LSH (datasketch) over word 5-gram shingles, Jaccard >= 0.8;
5. decontamination: a training problem is removed when its token 8-grams cover at least
   half of some benchmark problem's 8-grams (n-gram overlap in the style of the GPT-3 and
   Llama reports, scored per benchmark item so that short stock phrases do not count).

Limits: overlap is lexical; a problem reworded beyond recognition, or a benchmark problem
shorter than 8 tokens that is not copied verbatim, is not caught.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.utils.math_utils import last_boxed

DEFAULT_BENCHMARKS = ("math500", "gsm8k", "aime24", "aime25", "amc23")


# ----------------------------------------------------------------------------- answers

def reference_answer(solution: str, answer: str | None = None) -> str | None:
    """The final answer of a reference: answer field, else GSM8K "#### N", else last \\boxed{}."""
    for text in (answer, solution):
        if text and "####" in text:
            tail = text.rsplit("####", 1)[1].strip()
            if tail:
                return tail
    if answer is not None and str(answer).strip():
        return str(answer).strip()
    return last_boxed(solution or "")


_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def normalize_answer(answer: str) -> str:
    """Canonical text of a reference answer without changing its value.

    "025" -> "25", "27.0" -> "27", "1,000" -> "1000", "$5$" -> "5", "\\dfrac" -> "\\frac";
    anything else (LaTeX expressions, tuples, intervals) is only trimmed.
    """
    text = normalize_latex(str(answer)).strip()
    if len(text) >= 2 and text.startswith("$") and text.endswith("$"):
        text = text.strip("$").strip()
    if text.startswith("\\(") and text.endswith("\\)"):
        text = text[2:-2].strip()
    if _THOUSANDS_RE.fullmatch(text):
        text = text.replace(",", "")
    if _NUMBER_RE.fullmatch(text):
        if "." in text:
            whole, frac = text.split(".")
            frac = frac.rstrip("0")
            text = f"{whole}.{frac}" if frac else whole
        sign = "-" if text.startswith("-") else ""
        digits = text.lstrip("-")
        int_part, _, rest = digits.partition(".")
        int_part = int_part.lstrip("0") or "0"
        text = sign + int_part + (f".{rest}" if rest else "")
        if text == "-0":
            text = "0"
    return text


# ----------------------------------------------------------------------------- text noise

_LATEX_FIXES = [(re.compile(r"\\[dt]frac(?![a-zA-Z])"), r"\\frac"),
                (re.compile(r"\\!"), "")]


def normalize_latex(text: str) -> str:
    """LaTeX spellings that mean the same thing, made one (\\dfrac -> \\frac, no \\!)."""
    for pattern, repl in _LATEX_FIXES:
        text = pattern.sub(repl, text)
    return text


_FENCE_RE = re.compile(r"(```.*?(?:```|$))", re.DOTALL)


def _normalize_prose(text: str) -> str:
    text = normalize_latex(text)
    text = re.sub(r"[^\S\n]+", " ", text)  # runs of spaces/tabs/nbsp -> one space
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text)


def normalize_text(text: str) -> str:
    """Unicode NFKC, LaTeX spellings, spaces collapsed, at most one blank line in a row.

    Text inside ``` fences (TIR code and outputs) is left as it is: indentation matters.
    """
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    parts = _FENCE_RE.split(text)  # odd indices are fenced blocks
    return "".join(p if i % 2 else _normalize_prose(p) for i, p in enumerate(parts)).strip()


def problem_key(text: str) -> str:
    """The exact-duplicate key: lower case, only letters and digits (so spacing/punctuation
    and `$` delimiters do not make two copies look different)."""
    return re.sub(r"[\W_]+", "", normalize_text(text).lower())


_TOKEN_RE = re.compile(r"\\[a-zA-Z]+|[a-z]+|\d+|[^\s\w$]")


def tokens(text: str) -> list[str]:
    """Words, numbers, LaTeX commands and symbols of a problem (lower-cased, `$` dropped)."""
    return _TOKEN_RE.findall(normalize_text(text).lower())


def ngrams(toks: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """All n-grams; a text shorter than n tokens is one gram (so it can still match)."""
    if len(toks) < n:
        return {tuple(toks)} if toks else set()
    return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


# ----------------------------------------------------------------------------- duplicates

def dedup_exact(records: Sequence[MathRecord]) -> tuple[list[MathRecord], int]:
    """Keep the first of every group of records with the same `problem_key`."""
    seen: set[str] = set()
    kept = []
    for r in records:
        key = problem_key(r.problem)
        if key not in seen:
            seen.add(key)
            kept.append(r)
    return kept, len(records) - len(kept)


def dedup_near(records: Sequence[MathRecord], *, threshold: float = 0.8, num_perm: int = 128,
               shingle: int = 5, seed: int = 1) -> tuple[list[MathRecord], int]:
    """Drop records whose word-shingle Jaccard similarity to an earlier kept one is high.

    MinHash LSH (datasketch) keeps this near-linear; the threshold is approximate (LSH may
    miss pairs just above it or catch pairs just below).
    """
    from datasketch import MinHash, MinHashLSH

    shingles = [[" ".join(g).encode() for g in ngrams(tokens(r.problem), shingle)]
                for r in records]
    hashes = MinHash.bulk(shingles, num_perm=num_perm, seed=seed)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept = []
    for i, (record, mh) in enumerate(zip(records, hashes)):
        if lsh.query(mh):
            continue
        lsh.insert(str(i), mh)
        kept.append(record)
    return kept, len(records) - len(kept)


# ----------------------------------------------------------------------------- contamination

@dataclass
class ContaminationIndex:
    """Token n-grams of benchmark problems, to test training problems against."""

    n: int = 8  # n-gram length in tokens (words, numbers, LaTeX commands, symbols)
    threshold: float = 0.5  # share of a benchmark problem's n-grams that marks a match
    same_numbers: bool = True  # also require the benchmark's numbers to appear (see below)
    grams: dict[int, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    sizes: dict[tuple[str, int], int] = field(default_factory=dict)  # (bench, i) -> #grams
    numbers: dict[tuple[str, int], frozenset] = field(default_factory=dict)  # (bench, i) -> ints

    def add(self, benchmark: str, problems: Iterable[str]) -> None:
        for i, problem in enumerate(problems):
            toks = tokens(problem)
            gs = ngrams(toks, self.n)
            self.sizes[(benchmark, i)] = len(gs)
            self.numbers[(benchmark, i)] = frozenset(t for t in toks if t.isdigit())
            for g in gs:
                self.grams[hash(g)].append((benchmark, i))

    def match(self, problem: str) -> tuple[str, int] | None:
        """The (benchmark, index) this problem overlaps most, if over the threshold.

        With `same_numbers`, a benchmark problem only matches when all its numbers occur in
        the training problem: MATH is full of templates ("Convert the point (0,3) to polar
        coordinates") whose other instances, with other numbers, are different problems.
        """
        toks = tokens(problem)
        hits: Counter = Counter()
        for g in ngrams(toks, self.n):
            for item in self.grams.get(hash(g), ()):
                hits[item] += 1
        present = {t for t in toks if t.isdigit()}
        scored = sorted(((count / max(self.sizes[item], 1), item) for item, count in hits.items()),
                        reverse=True)
        for score, item in scored:
            if score < self.threshold:
                break
            if not self.same_numbers or self.numbers[item] <= present:
                return item
        return None


def load_benchmark_problems(names_or_paths: Iterable[str] = DEFAULT_BENCHMARKS, *,
                            data_dir: str | Path | None = None) -> dict[str, list[str]]:
    """Problems of evaluation benchmarks, keyed by benchmark name (a file's stem for a path).

    Names are read from `data_dir` / `$AIMO3_DATA_DIR` when their files are there, else from
    the hub (see `data.datasets.load_math_dataset`).
    """
    from aimo3_recipe.data.datasets import DATASETS, load_math_dataset

    out = {}
    for name in names_or_paths:
        key = str(name) if str(name) in DATASETS else Path(str(name)).stem
        records = load_math_dataset(str(name), require_answer=False, data_dir=data_dir)
        out[key] = [r.problem for r in records]
    return out


def decontaminate(records: Sequence[MathRecord], benchmarks: Mapping[str, Sequence[str]], *,
                  n: int = 8, threshold: float = 0.5,
                  ) -> tuple[list[MathRecord], dict[str, int]]:
    """Remove records that overlap a benchmark problem; return kept records and the number
    removed per benchmark (every benchmark listed, 0 included)."""
    index = ContaminationIndex(n=n, threshold=threshold)
    for name, problems in benchmarks.items():
        index.add(name, problems)
    removed = {name: 0 for name in benchmarks}
    kept = []
    for r in records:
        hit = index.match(r.problem)
        if hit is None:
            kept.append(r)
        else:
            removed[hit[0]] += 1
    return kept, removed


# ----------------------------------------------------------------------------- the pass

@dataclass
class PreprocessReport:
    """Counts of one preprocessing pass: every dropped row is in exactly one bucket."""

    input_rows: int = 0  # records given
    no_answer: int = 0  # dropped: no answer field, no "####", no \boxed{}
    exact_duplicates: int = 0  # dropped: same problem text as an earlier row
    near_duplicates: int = 0  # dropped: MinHash-similar to an earlier row
    contaminated: dict[str, int] = field(default_factory=dict)  # benchmark -> rows removed
    output_rows: int = 0  # records returned

    @property
    def contaminated_total(self) -> int:
        return sum(self.contaminated.values())

    def summary(self) -> str:
        contam = ", ".join(f"{k}: {v}" for k, v in self.contaminated.items()) or "not checked"
        return (f"preprocess: {self.input_rows} in -> {self.output_rows} out; dropped "
                f"{self.no_answer} without answer, {self.exact_duplicates} exact duplicates, "
                f"{self.near_duplicates} near duplicates, {self.contaminated_total} "
                f"contaminated ({contam})")


def preprocess(records: Sequence[MathRecord], *,
               benchmarks: Mapping[str, Sequence[str]] | None = None,
               near_duplicate_threshold: float | None = 0.8,
               ngram: int = 8, overlap_threshold: float = 0.5,
               ) -> tuple[list[MathRecord], PreprocessReport]:
    """Clean a training set: answers, text, duplicates, then decontamination.

    `benchmarks` maps a benchmark name to its problems (see `load_benchmark_problems`);
    None skips decontamination. `near_duplicate_threshold=None` skips near-dup removal.
    """
    report = PreprocessReport(input_rows=len(records))
    cleaned = []
    for r in records:
        answer = reference_answer(r.solution, r.answer)
        answer = normalize_answer(answer) if answer else ""
        if not answer:
            report.no_answer += 1
            continue
        cleaned.append(replace(r, problem=normalize_text(r.problem),
                               solution=normalize_text(r.solution) if r.solution else "",
                               answer=answer))
    cleaned, report.exact_duplicates = dedup_exact(cleaned)
    if near_duplicate_threshold is not None and cleaned:
        cleaned, report.near_duplicates = dedup_near(cleaned, threshold=near_duplicate_threshold)
    if benchmarks:
        cleaned, report.contaminated = decontaminate(cleaned, benchmarks, n=ngram,
                                                     threshold=overlap_threshold)
    report.output_rows = len(cleaned)
    return cleaned, report
