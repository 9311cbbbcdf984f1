"""The documentation points only inside the repository, and its links resolve.

* No comment or docstring in ``recbole_llm/`` or ``properties/`` cites a path outside the repository
  (the method notes and papers the docs were written from are not shipped; ``docs/`` is).
* Every ``docs/<page>.md`` named in code or YAML exists.
* Every relative link in the README and in ``docs/*.md`` resolves to a file or folder of the
  repository, and every ``#anchor`` to a heading of the linked page.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"shared/notes|shared/papers|\.\./shared|/work/")
DOCS_REF = re.compile(r"docs/[A-Za-z0-9_.-]+\.md")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _sources():
    files = sorted((ROOT / "recbole_llm").rglob("*.py")) + sorted((ROOT / "properties").rglob("*.yaml"))
    assert len(files) > 20
    return files


def _pages():
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def slug(heading):
    """GitHub's anchor of a Markdown heading: lower case, punctuation other than '-' and '_' dropped,
    spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} +(.+?) *$", text, re.M)}


def test_slug_follows_github():
    assert slug("SASRec on the same split") == "sasrec-on-the-same-split"
    assert slug("`cpu_ml100k` with the LLM baselines") == "cpu_ml100k-with-the-llm-baselines"
    assert slug("Foundation: LightGCN through RecBole") == "foundation-lightgcn-through-recbole"


def test_no_comment_points_outside_the_repository():
    bad = []
    for path in _sources():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if OUTSIDE.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "paths outside the repository (point to docs/ instead):\n" + "\n".join(bad)


def test_docs_pages_named_in_code_exist():
    named = {}
    for path in _sources():
        for ref in DOCS_REF.findall(path.read_text(encoding="utf-8")):
            named.setdefault(ref, path.relative_to(ROOT))
    assert named, "code and YAML should point to their docs/ pages"
    missing = [f"{ref} (named in {where})" for ref, where in named.items() if not (ROOT / ref).is_file()]
    assert not missing, missing


def test_method_pages_exist():
    for page in ("glta", "graph-attentive-gpt2", "hellm", "recbole-compat", "baselines", "benchmarks"):
        assert (ROOT / "docs" / f"{page}.md").is_file(), page


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, page.name
