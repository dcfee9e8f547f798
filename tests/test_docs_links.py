"""Every link between the README and docs/ pages points at a page that exists and, with #section, at a heading it
has (GitHub's anchors: lower case, punctuation dropped, spaces to hyphens)."""

import glob
import os
import re

from conftest import REPO

LINK = re.compile(r"\]\(([^)\s]+?\.md)(#[^)\s]*)?\)")


def _anchors(path: str) -> set[str]:
    with open(path) as f:
        headings = [line.lstrip("#").strip() for line in f if re.match(r"#{1,6} ", line)]
    return {"#" + re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_page_link_and_section_resolves():
    pages = [os.path.join(REPO, "README.md"), *glob.glob(os.path.join(REPO, "docs", "*.md"))]
    broken = []
    for page in pages:
        with open(page) as f:
            text = f.read()
        for target, anchor in LINK.findall(text):
            if "://" in target:
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(page), target))
            if not os.path.exists(path):
                broken.append(f"{os.path.relpath(page, REPO)}: {target} does not exist")
            elif anchor and anchor not in _anchors(path):
                broken.append(f"{os.path.relpath(page, REPO)}: {target}{anchor} names no heading there")
    assert not broken, "\n".join(broken)
