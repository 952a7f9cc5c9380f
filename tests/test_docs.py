"""The documents tell the truth (issue 16): docs/wire-format.md's examples are what the converter
does, every transcript, rule and section they cite exists, and every count and file the README
names is checked against the repository, so the figures cannot drift unnoticed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_transcripts import HERE as TRANSCRIPTS
from tests.test_transcripts import run

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "wire-format.md").read_text()
README = (ROOT / "README.md").read_text()
CONFIG = (ROOT / "config" / "proxy.toml").read_text()

EXAMPLE = re.compile(r"<!-- example (\S+) (upstream|legacy|modern) -->\n```\n(.*?)```", re.S)
TRANSCRIPT_NAME = re.compile(r"`(m?\d\d_[a-z0-9_]+)`")


def examples() -> dict[str, dict[str, bytes]]:
    found: dict[str, dict[str, bytes]] = {}
    for name, side, text in EXAMPLE.findall(DOC):
        found.setdefault(name, {})[side] = text.encode()
    return found


def test_the_doc_has_examples_in_pairs() -> None:
    pairs = examples()
    assert len(pairs) >= 5
    for name, sides in pairs.items():
        assert {"upstream", "legacy"} <= set(sides) <= {"upstream", "legacy", "modern"}, name


@pytest.mark.parametrize("name", sorted(examples()))
def test_each_example_is_what_the_converter_does(name: str) -> None:
    """The upstream bytes printed in the doc, converted with that transcript's options (model,
    ids, limits, how the upstream ended), give exactly the legacy bytes printed under them."""
    sides = examples()[name]
    assert run(f"{name}.legacy", [sides["upstream"]]) == sides["legacy"]
    if "modern" in sides:  # the same upstream bytes for a 2023-06-01 client (section 6)
        assert run(f"{name}.modern", [sides["upstream"]]) == sides["modern"]


def test_the_first_example_is_the_transcript_itself() -> None:
    up = (TRANSCRIPTS / "01_spec_example.upstream").read_bytes()
    legacy = (TRANSCRIPTS / "01_spec_example.legacy").read_bytes()
    assert examples()["01_spec_example"] == {"upstream": up, "legacy": legacy}


@pytest.mark.parametrize("where", ["docs/wire-format.md", "README.md"])
def test_every_transcript_cited_exists(where: str) -> None:
    text = (ROOT / where).read_text()
    for name in TRANSCRIPT_NAME.findall(text):
        assert (TRANSCRIPTS / f"{name}.upstream").exists(), f"{where} cites {name}"
        assert (TRANSCRIPTS / f"{name}.legacy").exists(), f"{where} cites {name}"


def doc_rules() -> set[int]:
    return {int(n) for n in re.findall(r"^\*\*Rule (\d+) ", DOC, re.M)}


def doc_sections() -> set[int]:
    return {int(n) for n in re.findall(r"^## (\d+)\. ", DOC, re.M)}


def test_rules_and_sections_are_numbered_without_gaps() -> None:
    assert doc_rules() == set(range(1, 9))
    assert doc_sections() == set(range(1, 9))


@pytest.mark.parametrize("where", ["README.md", "config/proxy.toml", "docs/wire-format.md"])
def test_rules_and_sections_cited_exist(where: str) -> None:
    text = (ROOT / where).read_text()
    for kind, n in re.findall(r"\b(rule|section)s? (\d+)\b", text):
        assert int(n) in (doc_rules() if kind == "rule" else doc_sections()), (where, kind, n)


@pytest.mark.parametrize("where", ["README.md", "config/proxy.toml", "config/example.env"])
def test_nothing_points_outside_the_repository(where: str) -> None:
    text = (ROOT / where).read_text()
    for outside in ("shared/", "beside the repository", "spec rule", "spec section",
                    "wire-formats.md", "the spec"):  # fmt: skip
        assert outside not in text, (where, outside)


# --- the README's files and figures -----------------------------------------------------------

TOP_LEVEL = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")} | {".ci"}
SKIP_DIRS = {".venv", ".venvs", "node_modules", "__pycache__"}


def readme_paths() -> set[str]:
    """Every token of the README that starts with a top-level file or folder of the repository,
    from inline code, links and code blocks. In the Development tree, bare names after a path
    (``proxy/sse.py, legacy.py``) are resolved in that path's folder."""
    paths: set[str] = set()
    tokens = re.findall(r"[\w.@/-]+", re.sub(r"https?://\S+", "", README))
    for token in tokens:
        token = token.rstrip(".,:;")
        head = token.split("/", 1)[0]
        if "/" in token and head in TOP_LEVEL - SKIP_DIRS:
            paths.add(token)
    tree = re.search(r"## Development\n\n```\n(.*?)```", README, re.S)
    if tree:
        for line in tree.group(1).splitlines():
            names = line.split("  ")[0].split(", ")
            folder = names[0].rsplit("/", 1)[0] if "/" in names[0].rstrip("/") else ""
            for n in names[1:]:
                paths.add(f"{folder}/{n.strip()}" if folder else n.strip())
    return paths


def test_every_file_the_readme_names_exists() -> None:
    paths = readme_paths()
    assert "config/proxy.toml" in paths and "docs/wire-format.md" in paths  # the check works
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, missing


def test_the_development_tree_lists_every_module() -> None:
    tree = re.search(r"## Development\n\n```\n(.*?)```", README, re.S)
    assert tree
    listed = readme_paths()
    for module in sorted((ROOT / "proxy").rglob("*.py")):
        if module.name == "__init__.py":
            continue
        rel = str(module.relative_to(ROOT))
        assert rel in listed or module.name in tree.group(1), f"{rel} missing from the tree"


def collected(*files: str) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    ).stdout  # fmt: skip
    return len([line for line in out.splitlines() if "::" in line])


def source(path: str) -> str:
    return (ROOT / path).read_text()


def figure(pattern: str) -> int:
    """The number the README puts where ``N`` is in the pattern (commas allowed: 7,500)."""
    match = re.search(pattern.replace("N", r"([\d,]+)"), " ".join(README.split()))
    assert match, f"the README no longer says {pattern!r}: update this test with it"
    return int(match.group(1).replace(",", ""))


def test_transcript_counts() -> None:
    pairs = sorted(p.stem for p in TRANSCRIPTS.glob("*.upstream"))
    messages = [p for p in pairs if p.startswith("m")]
    modern = sorted(p.stem for p in TRANSCRIPTS.glob("*.modern"))
    assert figure(r"holds N upstream streams") == len(pairs)
    assert figure(r"streams \(N Text Completions") == len(pairs) - len(messages)
    assert figure(r"Text Completions, N Messages\)") == len(messages)
    assert figure(r"for the N Messages streams, the bytes a 2023-06-01") == len(modern)


def test_reliability_counts() -> None:
    from tests.faults.test_faults import MID_STREAM_FAULTS

    faults = collected("tests/faults/test_faults.py")
    drain = collected("tests/e2e/test_process.py")
    assert figure(r"N fault cases against the real process") == faults + drain
    assert figure(r"\(N upstream faults mid-stream") == len(MID_STREAM_FAULTS)
    assert figure(r"N drain and disconnect cases") == drain
    assert figure(r"N further end-to-end cases") == collected(
        "tests/e2e/test_proxy.py", "tests/e2e/test_edges.py"
    )
    assert figure(r"test_hygiene.py`: N cases") == collected("tests/faults/test_hygiene.py")
    assert figure(r"test_memory.py`: N cases") == collected("tests/faults/test_memory.py")
    edge = source("tests/faults/test_faults.py")
    cases = re.search(r"    cases = \{\n(.*?)\n    \}  # fmt: skip", edge, re.S)
    assert cases
    assert figure(r"N crafted bad inputs") == len(re.findall(r'^        "[^"]+": ', cases.group(1),
                                                                re.M))  # fmt: skip
    assert f"range({figure(r'and N random byte strings on the raw socket')})" in edge
    convert, sse = source("tests/test_convert.py"), source("tests/test_sse.py")
    mutated, typed = figure(r"\(N with mutated bytes"), figure(r"N with values of the wrong type")
    assert figure(r"N fuzzed upstream streams") == mutated + typed
    assert re.search(rf"max_examples={mutated}\b.*?\ndef test_mutated_streams", convert, re.S)
    assert f"max_examples={typed}," in convert
    decoded = figure(r"plus N random byte strings into the SSE decoder")
    assert re.search(rf"max_examples={decoded}\b.{{0,200}}?def test_any_bytes", sse, re.S)
    soak = source("tests/faults/test_soak.py")
    streams = figure(r"Soak \([^)]*\): N concurrent legacy streams")
    assert f"{streams} concurrent legacy streams paced at 100 ms for 60 seconds" in soak
