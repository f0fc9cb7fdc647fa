"""The decisions page defines every id the tree cites, and no tracked file names a machine path.

(a) Every requirement or decision id (:data:`ID`: ``AMB-13``, ``RAMB-15``, ``CRY-28``, ``RPMB-D1``, ``PD-1``,
``TD-QUEUE-ENABLE-0``, ...) in a tracked file under :data:`CITING` is the id of exactly one heading of
``docs/decisions.md`` (docs/ is scanned too, so the page's own cross-references resolve). (b) No tracked file
contains a machine path (:data:`MACHINE_PATH`). Every entry of the page names its source. Each checker is a
pure function over ``{file name: text}`` and is also fed synthetic texts (negative controls), so every check
can fail. This module is scanned like any other file: its negative-control ids and paths are assembled at run
time, and :data:`MACHINE_PATH` is written so that its source text does not match itself.
"""
from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DECISIONS = "docs/decisions.md"
#: Where citations live (``git ls-files`` pathspecs).
CITING = ("vfu_virtio", "tests", "benchmarks", "guest", "scripts", "native", "docs", "README.md")
#: A requirement or decision id (docs/decisions.md, "Ids").
ID = re.compile(r"\b(?:AMB|RAMB|CRY|RPMB|DRV|PD|TD)-[0-9A-Z]+(?:-[0-9A-Z]+)*\b")
#: Paths of the machines the project is built on; the brackets keep this line from matching itself.
MACHINE_PATH = re.compile(r"/wor[k]/|/far[m]/|/tmp/ce[o]|share[d]/spec|share[d]/seeds")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.*)$", re.MULTILINE)
#: Ids the lead reserved before any code cites them (transport decisions) and the project decisions.
RESERVED = ("PD-1", "PD-2", "PD-3", "TD-MSIX-RESET", "TD-INDIRECT", "TD-ASYNC", "TD-QUEUE-ENABLE-0")


def tracked(*pathspecs: str) -> dict[str, str]:
    """``{path: text}`` of the tracked files under ``pathspecs`` (all when none); undecodable bytes replaced."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *pathspecs], cwd=ROOT, capture_output=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"the tracked-file checks need a git checkout: {e}")
    paths = [p for p in out.decode().split("\0") if p and (ROOT / p).is_file()]
    return {p: (ROOT / p).read_bytes().decode("utf-8", "replace") for p in paths}


def heading_ids(markdown: str) -> Counter:
    """How many headings of ``markdown`` carry each id."""
    return Counter(i for _level, title in HEADING.findall(markdown) for i in ID.findall(title))


def undefined_citations(texts: dict[str, str], defined) -> list[str]:
    """``path:line: id`` for every id in ``texts`` that is not in ``defined``."""
    return [f"{path}:{n}: {i}" for path, text in texts.items()
            for n, line in enumerate(text.splitlines(), 1) for i in ID.findall(line) if i not in defined]


def machine_paths(texts: dict[str, str]) -> list[str]:
    """``path:line: match`` for every machine path in ``texts``."""
    return [f"{path}:{n}: {m.group()}" for path, text in texts.items()
            for n, line in enumerate(text.splitlines(), 1) for m in MACHINE_PATH.finditer(line)]


def entries_without_source(markdown: str) -> list[str]:
    """Ids whose entry (the text up to the next heading) has no ``**Source.**`` paragraph."""
    heads = list(HEADING.finditer(markdown))
    missing = []
    for k, head in enumerate(heads):
        body = markdown[head.end():heads[k + 1].start() if k + 1 < len(heads) else len(markdown)]
        missing += [i for i in ID.findall(head.group(2)) if "**Source.**" not in body]
    return missing


@pytest.fixture(scope="module")
def page() -> str:
    return (ROOT / DECISIONS).read_text()


def test_every_cited_id_is_defined(page):
    texts = tracked(*CITING)
    assert DECISIONS in texts and "tests/test_docs.py" in texts  # the page and this module are scanned too
    assert undefined_citations(texts, heading_ids(page)) == []


def test_each_id_has_one_entry_with_its_source(page):
    counts = heading_ids(page)
    assert [i for i, n in counts.items() if n > 1] == []
    assert set(RESERVED) <= set(counts)
    assert entries_without_source(page) == []


def test_no_tracked_file_names_a_machine_path():
    assert machine_paths(tracked()) == []


def test_checkers_report_what_they_look_for():
    """Negative controls: the same functions find an undefined id, a longer id that only shares a prefix with a
    defined one, a machine path, a duplicate heading and an entry without its source."""
    undefined, longer = "AMB" + "-9999", "RAMB" + "-150"
    text = f"ok RAMB-15 and PD-1\nsee {undefined} and {longer}\n"
    assert undefined_citations({"x.py": text}, heading_ids("## RAMB-15 — a\n## PD-1 — b\n")) == \
        [f"x.py:2: {undefined}", f"x.py:2: {longer}"]
    path = "/" + "work" + "/main/x"
    assert machine_paths({"a.md": "fine\n", "b.py": f"x\nopen('{path}')\n"}) == ["b.py:2: " + path[:6]]
    assert machine_paths({"c.md": "share" + "d/spec/crypto.md"}) == ["c.md:1: share" + "d/spec"]
    sample = "### PD-1 — a\n**Source.** x\n### PD-1 — again\n### TD-ASYNC — b\ntext\n"
    assert heading_ids(sample)["PD-1"] == 2
    assert entries_without_source(sample) == ["PD-1", "TD-ASYNC"]
