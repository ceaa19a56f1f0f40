"""The documentation is self-contained: docs/losses.md is the registry's, and the README and
docs/ link nothing outside the repository."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from service.__main__ import main
from service.catalogue_doc import DETAILS, FAMILIES, render
from service.losses import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
LOSSES_MD = ROOT / "docs" / "losses.md"
DOCUMENTS = sorted(
    [ROOT / "README.md", ROOT / "clients" / "python" / "README.md", *(ROOT / "docs").rglob("*.md")]
)

# Text that points at the contract documents kept beside the repository (../shared), which a
# clone does not have.
OUTSIDE_WORDS = ("../shared", "/shared/", "SPEC section", "SPEC.md", "LOSSES.md")

_FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1")
_INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_HTML_LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"']*)["']""")
_BARE_URL = re.compile(r"(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)\S+", re.IGNORECASE)
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _prose(text: str) -> str:
    """The Markdown without its code blocks and code spans (where nothing is a link)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _links(text: str) -> list[str]:
    """Every link and image target of a Markdown document, code excluded."""
    prose = _prose(text)
    rest = _HTML_LINK.sub("", _REFERENCE_LINK.sub("", _INLINE_LINK.sub("]", prose)))
    return [
        *_INLINE_LINK.findall(prose),
        *_REFERENCE_LINK.findall(prose),
        *_HTML_LINK.findall(prose),
        *(url.rstrip(".,;:)>") for url in _BARE_URL.findall(rest)),
    ]


def _anchors(text: str) -> set[str]:
    """The anchors GitHub gives a document's headings (a repeated one gets -1, -2, ...)."""
    seen: Counter[str] = Counter()
    anchors = set()
    for heading in _HEADING.findall(_FENCE.sub("", text)):
        words = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", words.lower()).replace(" ", "-")
        anchors.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return anchors


def _problems(document: Path, text: str) -> list[str]:
    """What in one document (its path, its text) points outside the repository or at nothing."""
    found = [f"mentions {word!r}" for word in OUTSIDE_WORDS if word in text]
    for target in _links(text):
        path, _, fragment = target.partition("#")
        if re.match(r"[a-z][a-z0-9+.-]*:|//|www\.", path, re.IGNORECASE) or path.startswith("/"):
            found.append(f"links outside the repository: {target}")
            continue
        resolved = (document.parent / path).resolve() if path else document
        if not resolved.is_relative_to(ROOT):
            found.append(f"links outside the repository: {target}")
        elif not resolved.exists():
            found.append(f"links to a missing file: {target}")
        elif (
            fragment
            and resolved.suffix == ".md"
            and fragment not in _anchors(resolved.read_text(encoding="utf-8"))
        ):
            found.append(f"links to a missing heading: {target}")
    return found


def test_losses_md_is_generated_from_the_registry() -> None:
    """docs/losses.md is exactly what the registry renders."""
    assert LOSSES_MD.read_text(encoding="utf-8") == render(), (
        "docs/losses.md is out of date with service/losses: run `make docs` and commit it"
    )


def test_losses_md_covers_every_loss() -> None:
    """Every registered loss has its own heading, and every family its section."""
    anchors = _anchors(render())
    assert {spec.name for spec in REGISTRY} <= anchors
    assert {"conventions", *(re.sub(r"\W+", "-", t.lower()) for t, _ in FAMILIES.values())} <= (
        anchors
    )


def test_details_name_registered_losses() -> None:
    """The generator's notes are about losses that exist (a renamed loss would orphan them)."""
    assert set(DETAILS) <= {spec.name for spec in REGISTRY}
    assert {spec.family for spec in REGISTRY} <= set(FAMILIES)


def test_lossd_docs_prints_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    """`lossd docs` prints what `make docs` writes to docs/losses.md."""
    assert main(["docs"]) == 0
    assert capsys.readouterr().out == render()


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documents_link_nothing_outside_the_repository(document: Path) -> None:
    """The README and docs/ link only files of the repository that exist (and headings that do),
    and cite no document kept outside it."""
    assert _problems(document, document.read_text(encoding="utf-8")) == []


def test_the_link_check_catches_what_it_should() -> None:
    """The check above flags a link out of the repository, a missing file or heading, a URL, and
    leaves alone what code blocks and code spans show."""
    assert _links("[a](../shared/LOSSES.md) `[b](../x)` ![c](d.png)\n[e]: f.md\n") == [
        "../shared/LOSSES.md",
        "d.png",
        "f.md",
    ]
    assert _links("see https://example.org and <a href='/x'>x</a>") == ["/x", "https://example.org"]
    assert _anchors("# `smooth_l1`\n## Open Inference Protocol v2\n## A\n## A\n") == {
        "smooth_l1",
        "open-inference-protocol-v2",
        "a",
        "a-1",
    }
    readme = ROOT / "README.md"
    text = (
        "[a](../shared/x.md) [b](../../etc/passwd) [c](docs/nothing.md) [d](https://a.example)\n"
        "[e](docs/losses.md#no-such-heading) [f](docs/losses.md#mse) [g](#no-such-heading)\n"
        "```sh\ncurl http://127.0.0.1:8000/healthz\n```\n"
    )
    assert _problems(readme, text) == [
        "mentions '../shared'",
        "mentions '/shared/'",
        "links outside the repository: ../shared/x.md",
        "links outside the repository: ../../etc/passwd",
        "links to a missing file: docs/nothing.md",
        "links outside the repository: https://a.example",
        "links to a missing heading: docs/losses.md#no-such-heading",
        "links to a missing heading: #no-such-heading",
    ]
