"""README.md and its Simplified Chinese translation README.zh-CN.md say the same things.

Checked on the text alone (fast, no import of digitlab): the two files link to each other above their first
section; they have the same headings (one translated heading per English one, same levels, same order); the
commands in their code blocks are the same lines; they mention the same inline code (every `digitlab ...`
command, flag, file and name) and the same `digitlab` subcommands; every table holds the same figures; and the
code blocks are the same code (only `#` comments and the prose of plain-text blocks may be translated).

When README.md changes, the failure says what README.zh-CN.md lacks or has in excess, so the translation can be
brought up to date; nothing here tolerates a difference.
"""
from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EN, ZH = "README.md", "README.zh-CN.md"

# A line of a shell code block is a command when it starts with one of these (after joining `\` continuations).
COMMAND_PREFIXES = ("digitlab ", "python ", ".venv/bin/", "bash ", "pip ", "DIGITLAB_", "torchrun ", "cp ")
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
# A figure: 99.67%, 12.1x, 19.0, 2,203, 1,162,785 (digits glued to letters, as in lenet5 or fp32, are not figures).
FIGURE = re.compile(r"(?<![A-Za-z0-9_.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:%|x(?![A-Za-z0-9_]))?")
SUBCOMMAND = re.compile(r"(?<![A-Za-z0-9_./~-])digitlab +([a-z][a-z0-9-]*)")
# In a plain-text block (a file tree) the prose may be translated, but not its paths, files and identifiers.
CODE_TOKEN = re.compile(r"[A-Za-z0-9_.~/*-]*[A-Za-z0-9][A-Za-z0-9_.~/*-]*")


@dataclass
class Block:
    lang: str
    line: int  # 1-based line of the opening fence
    lines: list[str]


@dataclass
class Table:
    line: int
    section: int  # index of the heading it sits under (-1: above the first heading)
    heading: str
    rows: list[str]


@dataclass
class Doc:
    name: str
    text: str
    headings: list[tuple[int, str, int]] = field(default_factory=list)  # (level, title, line)
    blocks: list[Block] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    prose: str = ""  # the text outside code blocks


def parse(name: str, text: str) -> Doc:
    doc = Doc(name, text)
    prose: list[str] = []
    block: Block | None = None
    table: Table | None = None
    heading = "(top)"
    for number, line in enumerate(text.splitlines(), 1):
        if block is not None:
            if line.strip().startswith("```"):
                doc.blocks.append(block)
                block = None
            else:
                block.lines.append(line)
            prose.append("")
            continue
        if line.strip().startswith("```"):
            block = Block(line.strip()[3:].strip().lower(), number, [])
            table = None
            prose.append("")
            continue
        prose.append(line)
        m = re.match(r"(#{1,6})\s+(.*\S)", line)
        if m:
            doc.headings.append((len(m.group(1)), m.group(2), number))
            heading = m.group(2)
        if line.lstrip().startswith("|"):
            if table is None:
                table = Table(number, len(doc.headings) - 1, heading, [])
                doc.tables.append(table)
            if not re.fullmatch(r"\s*\|[\s|:-]*\|?\s*", line):  # not the |---|---| separator
                table.rows.append(line)
        else:
            table = None
    if block is not None:
        doc.blocks.append(block)  # unclosed fence: keep what there is
    doc.prose = "\n".join(prose)
    return doc


def _strip_comment(line: str) -> str:
    """A shell or Python line without its trailing `# comment` (a # at the start or after a space)."""
    return re.sub(r"(^|\s)#.*$", "", line).rstrip()


def commands(doc: Doc) -> list[str]:
    """Command lines of the shell and plain code blocks, `\\` continuations joined, comments stripped."""
    found = []
    for block in doc.blocks:
        if block.lang not in SHELL_LANGS:
            continue
        logical, pending = [], ""
        for line in block.lines:
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
            else:
                logical.append(pending + line)
                pending = ""
        if pending:
            logical.append(pending)
        for line in logical:
            line = " ".join(_strip_comment(line.strip()).split())
            if line.startswith(COMMAND_PREFIXES):
                found.append(line)
    return found


def inline_code(doc: Doc) -> list[str]:
    """Every inline code span outside code blocks, whitespace normalised (a span may wrap across lines)."""
    return [" ".join(s.split()) for s in re.findall(r"(?<!`)`([^`]+)`(?!`)", doc.prose)]


def subcommands(doc: Doc) -> set[str]:
    """`digitlab X` subcommand names, in code blocks' commands and in inline code."""
    return {m for text in commands(doc) + inline_code(doc) for m in SUBCOMMAND.findall(text)}


def table_figures(table: Table) -> Counter:
    return Counter(m for row in table.rows for m in FIGURE.findall(row))


def _where(doc: Doc, line: int) -> str:
    return f"{doc.name}:{line}"


def _diff_sets(en: Doc, zh: Doc, a, b, what: str) -> list[str]:
    problems = [f"{en.name} has {what} `{x}` that {zh.name} lacks" for x in sorted(set(a) - set(b))]
    problems += [f"{zh.name} has {what} `{x}` that {en.name} lacks" for x in sorted(set(b) - set(a))]
    return problems


# --- the checks: each returns the list of differences, empty when the files agree ---------------------------------


def check_links(en: Doc, zh: Doc) -> list[str]:
    problems = []
    for doc, target, label in ((en, ZH, "[中文]"), (zh, EN, "[English]")):
        first_section = next((line for level, _, line in doc.headings if level >= 2), len(doc.text.splitlines()) + 1)
        top = "\n".join(doc.text.splitlines()[: first_section - 1])
        if f"]({target})" not in top:
            problems.append(f"{doc.name} has no link to {target} above its first section "
                            f"(expected a line like `{label}({target})` under the title)")
    return problems


def check_headings(en: Doc, zh: Doc) -> list[str]:
    la, lb = [h[0] for h in en.headings], [h[0] for h in zh.headings]
    if la == lb:
        return []
    problems = []
    if len(la) != len(lb):
        problems.append(f"{en.name} has {len(la)} headings, {zh.name} has {len(lb)}")
    i = next((i for i, (a, b) in enumerate(zip(la, lb)) if a != b), min(len(la), len(lb)))
    a = f"{_where(en, en.headings[i][2])} `{'#' * la[i]} {en.headings[i][1]}`" if i < len(la) else f"the end of {en.name}"
    b = f"{_where(zh, zh.headings[i][2])} `{'#' * lb[i]} {zh.headings[i][1]}`" if i < len(lb) else f"the end of {zh.name}"
    problems.append(f"heading {i + 1} is the first out of step: {a} vs {b} (a section is missing or extra near here)")
    side = [f"{j + 1:3}. {'#' * h[0] + ' ' + h[1] if h else '-':<55} | {'#' * g[0] + ' ' + g[1] if g else '-'}"
            for j, (h, g) in enumerate(_zip_longest(en.headings, zh.headings))]
    problems.append("headings side by side:\n    " + "\n    ".join(side))
    return problems


def _zip_longest(a: list, b: list) -> list[tuple]:
    n = max(len(a), len(b))
    return [(a[j] if j < len(a) else None, b[j] if j < len(b) else None) for j in range(n)]


def check_commands(en: Doc, zh: Doc) -> list[str]:
    a, b = commands(en), commands(zh)
    problems = _diff_sets(en, zh, a, b, "the command")
    if not problems and a != b:
        for i, (x, y) in enumerate(zip(a, b), 1):
            if x != y:
                problems.append(f"code-block commands are in a different order from command {i}: "
                                f"{en.name} `{x}` vs {zh.name} `{y}`")
                break
        else:
            problems.append(f"{en.name} has {len(a)} code-block command lines, {zh.name} has {len(b)} "
                            f"(a command is repeated in one of them: {sorted((Counter(a) - Counter(b)) + (Counter(b) - Counter(a)))})")
    return problems


def check_inline_code(en: Doc, zh: Doc) -> list[str]:
    problems = _diff_sets(en, zh, subcommands(en), subcommands(zh), "a mention of the subcommand digitlab")
    problems += _diff_sets(en, zh, inline_code(en), inline_code(zh), "the inline code")
    return problems


def check_tables(en: Doc, zh: Doc) -> list[str]:
    """Tables are paired section by section (the headings correspond one to one), then in order within a section.
    While the headings are out of step, the figures of all tables are compared as one multiset instead."""
    if [h[0] for h in en.headings] != [h[0] for h in zh.headings]:
        return _all_table_figures(en, zh)
    problems = []
    for section in sorted({tb.section for tb in en.tables + zh.tables}):
        ta = [tb for tb in en.tables if tb.section == section]
        tz = [tb for tb in zh.tables if tb.section == section]
        name = ta[0].heading if ta else tz[0].heading
        if len(ta) != len(tz):
            problems.append(f"section `{name}` has {len(ta)} table(s) in {en.name} "
                            f"({', '.join(str(x.line) for x in ta) or '-'}) and {len(tz)} in {zh.name} "
                            f"({', '.join(str(x.line) for x in tz) or '-'})")
            continue
        for a, b in zip(ta, tz):
            label = f"the table at {_where(en, a.line)} / {_where(zh, b.line)} (section `{a.heading}`)"
            if len(a.rows) != len(b.rows):
                problems.append(f"{label}: {en.name} has {len(a.rows)} rows, {zh.name} has {len(b.rows)}")
            fa, fb = table_figures(a), table_figures(b)
            for figure in sorted(set(fa) | set(fb)):
                if fa[figure] != fb[figure]:
                    problems.append(f"{label}: the figure {figure} appears {fa[figure]} time(s) in {en.name}, "
                                    f"{fb[figure]} in {zh.name}")
    return problems


def _all_table_figures(en: Doc, zh: Doc) -> list[str]:
    problems = [f"(the headings are out of step, so the tables of {en.name} and {zh.name} are compared as a whole)"]
    fa = Counter(f for tb in en.tables for f in table_figures(tb))
    fb = Counter(f for tb in zh.tables for f in table_figures(tb))
    for doc, mine, other, other_name in ((en, fa, fb, zh.name), (zh, fb, fa, en.name)):
        for figure in sorted(mine - other):
            where = ", ".join(f"{doc.name}:{tb.line} (`{tb.heading}`)" for tb in doc.tables if figure in table_figures(tb))
            problems.append(f"{doc.name} has the table figure {figure} {(mine - other)[figure]} more time(s) than "
                            f"{other_name}; it is in the table(s) at {where}")
    return problems if len(problems) > 1 else []


def _code(block: Block) -> tuple:
    """What must be identical in a code block: code without comments; for a plain-text block (command output, a
    file tree) whose prose may be translated, its paths, files and identifiers."""
    if block.lang:
        return (block.lang, tuple(_strip_comment(x) for x in block.lines))
    tokens = {t for x in block.lines for t in CODE_TOKEN.findall(x) if re.search(r"[./_]", t.strip("."))}
    return (block.lang, tuple(sorted(tokens)))


def _first_line(block: Block) -> str:
    return next((x.strip() for x in block.lines if x.strip()), "")


def check_code_blocks(en: Doc, zh: Doc) -> list[str]:
    """Blocks are aligned by content (a block added to one file shows as added, not as every later block changed)."""
    problems = []
    ca, cb = [_code(b) for b in en.blocks], [_code(b) for b in zh.blocks]
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=ca, b=cb, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        pairs = list(zip(range(i1, i2), range(j1, j2))) if op == "replace" else []
        for i, j in pairs:
            a, b = en.blocks[i], zh.blocks[j]
            label = f"the {a.lang or 'plain'} block at {_where(en, a.line)} / {_where(zh, b.line)}"
            if a.lang != b.lang:
                problems.append(f"{label}: {en.name}'s is `{a.lang or 'plain'}`, {zh.name}'s is `{b.lang or 'plain'}`")
            elif a.lang:
                la, lb = ca[i][1], cb[j][1]
                for tag, k1, k2, m1, m2 in difflib.SequenceMatcher(a=la, b=lb, autojunk=False).get_opcodes():
                    if tag in ("replace", "delete"):
                        problems += [f"{label}: {en.name} has the line {k + 1} `{la[k]}` that {zh.name} lacks"
                                     for k in range(k1, k2)]
                    if tag in ("replace", "insert"):
                        problems += [f"{label}: {zh.name} has the line {m + 1} `{lb[m]}` that {en.name} lacks"
                                     for m in range(m1, m2)]
            else:
                ta, tb = set(ca[i][1]), set(cb[j][1])
                problems += [f"{label}: {en.name} has `{x}` that {zh.name} lacks" for x in sorted(ta - tb)]
                problems += [f"{label}: {zh.name} has `{x}` that {en.name} lacks" for x in sorted(tb - ta)]
        for i in range(i1 + len(pairs), i2):
            a = en.blocks[i]
            problems.append(f"{en.name} has a {a.lang or 'plain'} block at {_where(en, a.line)} "
                            f"(`{_first_line(a)}` ...) that {zh.name} lacks")
        for j in range(j1 + len(pairs), j2):
            b = zh.blocks[j]
            problems.append(f"{zh.name} has a {b.lang or 'plain'} block at {_where(zh, b.line)} "
                            f"(`{_first_line(b)}` ...) that {en.name} lacks")
    return problems


CHECKS = [check_links, check_headings, check_commands, check_inline_code, check_tables, check_code_blocks]


@pytest.fixture(scope="module")
def docs() -> tuple[Doc, Doc]:
    texts = []
    for name in (EN, ZH):
        path = ROOT / name
        assert path.exists(), f"{name} is missing"
        texts.append(parse(name, path.read_text(encoding="utf-8")))
    return texts[0], texts[1]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_translation_matches_the_english_readme(docs, check):
    problems = check(*docs)
    assert not problems, f"{ZH} is out of step with {EN}:\n  " + "\n  ".join(problems)


def test_the_parse_finds_what_the_checks_compare(docs):
    """Guards against a check passing because it found nothing."""
    en, _ = docs
    assert len(en.headings) >= 10 and len(en.tables) >= 10 and len(en.blocks) >= 5
    assert "digitlab train --recipe fast" in commands(en) or "digitlab train --recipe fast" in inline_code(en)
    assert {"train", "predict", "serve", "export", "compare", "inspect", "evaluate"} <= subcommands(en)
    assert sum(map(len, map(table_figures, en.tables))) >= 100


# --- each check can fail: mutate the real translation and expect the difference to be named -----------------------


def _set_line(text: str, number: int, new: str | None) -> str:
    """Replace (or, with None, delete) 1-based line `number`."""
    lines = text.split("\n")
    lines[number - 1: number] = [] if new is None else [new]
    return "\n".join(lines)


def _line_of(doc: Doc, match) -> int:
    return next(n for n, line in enumerate(doc.text.split("\n"), 1) if match(line))


def _once(items: list[str]) -> list[str]:
    counts = Counter(items)
    return [x for x in items if counts[x] == 1]


def _normal(line: str) -> str:
    return " ".join(_strip_comment(line.strip()).split())


# Each mutation takes the parsed translation and returns (mutated text, what the check must say). They pick their
# targets from the file, so they keep working as the READMEs grow.
def _no_link_back(zh: Doc):
    return zh.text.replace(f"]({EN})", "](https://example.org)"), f"{ZH} has no link to {EN}"


def _heading_dropped(zh: Doc):
    line = next(ln for lv, _, ln in zh.headings if lv == 3)
    return _set_line(zh.text, line, None), f"headings, {ZH} has {len(zh.headings) - 1}"


def _heading_demoted(zh: Doc):
    i, (_, title, line) = next((i, h) for i, h in enumerate(zh.headings) if h[0] == 2)
    return _set_line(zh.text, line, f"### {title}"), f"heading {i + 1} is the first out of step"


def _one_line_command(zh: Doc) -> tuple[str, int]:
    """A command that occurs once and on one line (not `\\`-continued), and its line number."""
    lines = [_normal(x) for x in zh.text.split("\n")]
    command = next(c for c in _once(commands(zh)) if c in lines)
    return command, lines.index(command) + 1


def _command_deleted(zh: Doc):
    command, line = _one_line_command(zh)
    return _set_line(zh.text, line, None), f"{EN} has the command `{command}` that {ZH} lacks"


def _command_changed(zh: Doc):
    command, line = _one_line_command(zh)
    return (_set_line(zh.text, line, zh.text.split("\n")[line - 1].replace(command, command + " --typo", 1)),
            f"{ZH} has the command `{command} --typo` that {EN} lacks")


def _inline_command_changed(zh: Doc):
    span = next(s for s in _once(inline_code(zh)) if s.startswith("digitlab ") and f"`{s}`" in zh.prose)
    return zh.text.replace(f"`{span}`", f"`{span} --typo`"), f"{EN} has the inline code `{span}` that {ZH} lacks"


def _subcommand_renamed(zh: Doc):
    return zh.text.replace("digitlab inspect", "digitlab peek"), f"{ZH} has a mention of the subcommand digitlab `peek`"


def _figure_changed(zh: Doc):
    row = next(r for table in zh.tables for r in table.rows[1:] if re.search(r"\d\.\d+%", r))
    figure = re.search(r"\d+\.\d+%", row).group()
    line = _line_of(zh, lambda x: x == row)
    changed = figure[:-2] + str((int(figure[-2]) + 1) % 10) + "%"
    return _set_line(zh.text, line, row.replace(figure, changed, 1)), f"the figure {figure} appears"


def _row_dropped(zh: Doc):
    table = next(t for t in zh.tables if len(t.rows) >= 3)
    return _set_line(zh.text, _line_of(zh, lambda x: x == table.rows[-1]), None), "rows"


def _code_changed(zh: Doc):
    block = next(b for b in zh.blocks if b.lang and b.lang not in SHELL_LANGS)
    j = next(j for j, x in enumerate(block.lines) if _strip_comment(x))
    return (_set_line(zh.text, block.line + 1 + j, block.lines[j] + "_typo"),
            f"{ZH} has the line {j + 1} `{_strip_comment(block.lines[j])}_typo` that {EN} lacks")


def _tree_path_changed(zh: Doc):
    block = next(b for b in reversed(zh.blocks) if not b.lang and len(b.lines) > 3)
    return _set_line(zh.text, block.line + 1, block.lines[0] + " typo.py"), f"{ZH} has `typo.py` that {EN} lacks"


MUTATIONS = {
    "no link back": (check_links, _no_link_back),
    "a heading dropped": (check_headings, _heading_dropped),
    "a heading demoted": (check_headings, _heading_demoted),
    "a command deleted": (check_commands, _command_deleted),
    "a command changed": (check_commands, _command_changed),
    "an inline command changed": (check_inline_code, _inline_command_changed),
    "a subcommand renamed": (check_inline_code, _subcommand_renamed),
    "a figure changed": (check_tables, _figure_changed),
    "a table row dropped": (check_tables, _row_dropped),
    "code changed": (check_code_blocks, _code_changed),
    "a path in a file tree changed": (check_code_blocks, _tree_path_changed),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_each_check_catches_a_difference(docs, name):
    check, mutate = MUTATIONS[name]
    en, zh = docs
    if any(c(en, zh) for c in CHECKS):
        pytest.skip(f"{ZH} is already out of step with {EN} (see test_the_translation_matches_the_english_readme)")
    mutated, expected = mutate(zh)
    assert mutated != zh.text, f"the mutation {name!r} found nothing to change in {ZH}"
    problems = check(en, parse(ZH, mutated))
    assert any(expected in p for p in problems), f"{check.__name__} missed {name!r}; it said: {problems}"
