#!/usr/bin/env python3
"""Fails on broken internal links in README.md, CHANGELOG.md and the book (docs/src):
a relative link to a file that does not exist, an anchor that names no heading of its page,
a SUMMARY.md entry without its page, or a page of docs/src missing from SUMMARY.md."""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"```.*?```", re.S)


def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"`", "", s)
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path):
    text = CODE.sub("", path.read_text(encoding="utf-8"))
    return {slug(m.group(2)) for m in re.finditer(r"^(#{1,6}) (.+)$", text, re.M)}


def main():
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md"] + sorted((ROOT / "docs/src").rglob("*.md"))
    errors = []
    for page in pages:
        text = CODE.sub("", page.read_text(encoding="utf-8"))
        text = re.sub(r"`[^`\n]*`", "", text)
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                errors.append(f"{page.relative_to(ROOT)}: link to {target}: no such file")
                continue
            if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                errors.append(f"{page.relative_to(ROOT)}: link to {target}: no such heading")
    summary = ROOT / "docs/src/SUMMARY.md"
    listed = {
        (summary.parent / t).resolve()
        for t in re.findall(r"\]\(([^)]+\.md)\)", summary.read_text(encoding="utf-8"))
    }
    for page in (ROOT / "docs/src").rglob("*.md"):
        if page.name in ("SUMMARY.md", "performance-figures.md"):
            continue
        if page.resolve() not in listed:
            errors.append(f"{page.relative_to(ROOT)}: not in docs/src/SUMMARY.md")
    for e in errors:
        print(e)
    if errors:
        sys.exit(f"{len(errors)} broken link(s)")
    print(f"links: {len(pages)} pages checked, none broken")


if __name__ == "__main__":
    main()
