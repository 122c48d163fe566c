#!/usr/bin/env python3
"""Checks README.md, CONTRIBUTING.md and docs/*.md against the repository and the built apps.

    python3 scripts/check_docs.py --repo . --apps build/apps      # links, config keys, app flags
    python3 scripts/check_docs.py --repo . --links-only           # links only: no build needed

What it checks:

  links  Every relative markdown link, [text](path) or [text](path#anchor) (and reference
         definitions, [name]: path), names a file or folder that exists, relative to the file
         holding the link; an #anchor into a markdown file (or a bare #anchor into the same file)
         names one of its headings by GitHub's slug (lowercase, punctuation but '-' and '_'
         removed, each space a '-', repeated headings numbered -1, -2, ...). Links with a scheme
         (http:, https:, mailto:, ...) are not followed.
  keys   Every config key the docs name in code, `section.name` (also `model.input_norm: patch`
         and `--set data.dataset=packed`), is a key of the schema, which is read from
         `<apps>/ocl_pretrain --config <repo>/configs/quickstart.yaml --print-config`. Only
         tokens whose first part is one of the config's sections count, so `ocl.input_norm` or
         `metrics.jsonl` are not keys; a file name such as `train.log` (a section, then a file
         extension that is no key of it) is not either.
  flags  Every --flag on a command in code that runs one of the apps (a backticked span or a
         line of a fenced block whose command is an app, by any path, or a launcher such as
         torchrun, srun or mpirun that runs one) is in that app's --help. A backticked span that
         is only flags (`--resume auto`) is checked against the app(s) named in backticks in
         the heading it stands under (`## Pre-training: ocl_pretrain`), and not checked where
         the heading names no app.

It prints one line per problem, "FILE:LINE: what", then a summary line, and exits 1 when there
was a problem, 0 otherwise (2 on a bad command line). Standard library only.
"""

import argparse
import glob
import os
import re
import shlex
import subprocess
import sys
import urllib.parse

APPS = ("ocl_pretrain", "ocl_finetune", "ocl_linprobe", "ocl_knn", "ocl_pack", "ocl_bench",
        "ocl_preview")

# Commands that run the command given after their own options: an app after one of these is the
# command of the line (`torchrun --nproc_per_node 4 --no_python build/apps/ocl_pretrain ...`).
LAUNCHERS = ("torchrun", "srun", "mpirun", "mpiexec", "timeout", "env", "nohup", "time",
             "exec", "taskset", "numactl", "sudo", "gdb", "valgrind", "xargs")

# Keys the config reader accepts beside the ones --print-config writes (src/io/config.cpp:
# `optim.betas: [b1, b2]`, PyTorch's spelling of beta1 and beta2).
KEY_ALIASES = ("optim.betas",)

# `train.log` names a file, not the key `log` of section `train`: a "key" that is not in the
# schema and whose name is one of these extensions is taken for a file name.
FILE_EXTENSIONS = frozenset("""
    a bin c cc cmake cpp csv gz h hpp jpeg jpg json jsonl lock log md npy ocl pdf png pt pth py
    safetensors sh so tar tgz toml txt webp xz yaml yml zip
""".split())

SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^\s()]+(?:\([^\s()]*\)[^\s()]*)*)"
                  r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>\n]*>|\S+)")
FLAG = re.compile(r"^--[A-Za-z0-9][A-Za-z0-9_-]*")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = ("&&", "||", ";", "|", "&", ";;")


class Problems:
    """The problems found, printed in the order of the files and their lines."""

    def __init__(self):
        self._found = []

    def add(self, where, text):
        """A problem outside the docs (an app that cannot be run): printed first."""
        self._found.append(((-1, 0), "%s: %s" % (where, text)))

    def at(self, doc, line, text):
        self._found.append(((doc.order, line), "%s:%d: %s" % (doc.rel, line, text)))

    @property
    def lines(self):
        return [text for _, text in sorted(self._found, key=lambda found: found[0])]


# ------------------------------------------------------------------------------------------------
# Reading a markdown file: fenced blocks, headings, paragraphs, inline code spans.


class Doc:
    """One markdown file, cut into what the checks need."""

    def __init__(self, path, rel, order=0):
        self.path = path
        self.rel = rel  # as printed, relative to the repository
        self.order = order  # its place among the files checked
        with open(path, encoding="utf-8") as f:
            self.lines = f.read().split("\n")
        self.headings = []  # (line number, level, text)
        self.code_lines = []  # (line number, text): lines of fenced blocks
        self.paragraphs = []  # (first line number, text with '\n'): runs of non-blank lines
        self._parse()

    def _parse(self):
        fence = None
        para, para_start = [], 0

        def end_paragraph():
            nonlocal para
            if para:
                self.paragraphs.append((para_start, "\n".join(para)))
            para = []

        for number, line in enumerate(self.lines, 1):
            m = FENCE.match(line)
            if fence is not None:
                if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and \
                        not line.strip()[len(m.group(1)):].strip():
                    fence = None
                else:
                    self.code_lines.append((number, line))
                continue
            if m:
                end_paragraph()
                fence = m.group(1)
                continue
            h = HEADING.match(line)
            if h:
                end_paragraph()
                text = re.sub(r"[ \t]+#+$", "", h.group(2) or "")
                self.headings.append((number, len(h.group(1)), text))
                continue
            if not line.strip():
                end_paragraph()
                continue
            if not para:
                para_start = number
            para.append(line)
        end_paragraph()

    def heading_before(self, number):
        """The text of the last heading above line `number` ('' when none)."""
        text = ""
        for n, _, t in self.headings:
            if n > number:
                break
            text = t
        return text


def code_spans(text):
    """(start, end, content) of each inline code span in a paragraph, CommonMark's way: a run of
    n backticks up to the next run of exactly n. The content keeps its line ends (a span may run
    over several lines), so that an offset in it still gives a line number."""
    spans = []
    i = 0
    while True:
        m = re.compile(r"`+").search(text, i)
        if not m:
            return spans
        run = m.group(0)
        close = re.compile(r"(?<!`)" + run + r"(?!`)").search(text, m.end())
        if not close:
            i = m.end()
            continue
        spans.append((m.start(), close.end(), text[m.end():close.start()]))
        i = close.end()


def line_of(paragraph_start, text, offset):
    return paragraph_start + text.count("\n", 0, offset)


# ------------------------------------------------------------------------------------------------
# Links.


def slug(heading):
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


_anchor_cache = {}


def anchors(path):
    if path not in _anchor_cache:
        doc = Doc(path, path)
        seen, found = {}, set()
        for _, _, text in doc.headings:
            base = slug(text)
            n = seen.get(base, 0)
            found.add(base if n == 0 else "%s-%d" % (base, n))
            seen[base] = n + 1
        for line in doc.lines:  # explicit HTML anchors
            for m in re.finditer(r"<a\s[^>]*\b(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", line):
                found.add(m.group(1))
        _anchor_cache[path] = found
    return _anchor_cache[path]


def check_link(doc, number, target, repo, problems):
    if target.startswith("<") and target.endswith(">"):
        target = target[1:-1]
    if not target or SCHEME.match(target):
        return 0
    path_part, _, anchor = target.partition("#")
    path_part = urllib.parse.unquote(path_part)
    anchor = urllib.parse.unquote(anchor)
    if path_part:
        base = repo if path_part.startswith("/") else os.path.dirname(doc.path)
        resolved = os.path.normpath(os.path.join(base, path_part.lstrip("/")))
        if not os.path.exists(resolved):
            problems.at(doc, number, "link to %s: no such file" % target)
            return 1
    else:
        resolved = doc.path
    if anchor and resolved.endswith(".md") and os.path.isfile(resolved):
        if anchor not in anchors(resolved):
            problems.at(doc, number, "link to %s: no such heading" % target)
    return 1


def check_links(doc, repo, problems):
    count = 0
    for start, text in doc.paragraphs:
        # Links are not looked for inside code spans; the spans keep their length (and line ends)
        # so that offsets still give line numbers.
        masked = list(text)
        for s, e, _ in code_spans(text):
            for k in range(s, e):
                if masked[k] != "\n":
                    masked[k] = "x"
        masked = "".join(masked)
        for m in LINK.finditer(masked):
            target = text[m.start(1):m.end(1)]
            count += check_link(doc, line_of(start, text, m.start()), target, repo, problems)
        for k, line in enumerate(masked.split("\n")):
            m = REF_DEF.match(line)
            if m:
                target = text.split("\n")[k][m.start(1):m.end(1)]
                count += check_link(doc, start + k, target, repo, problems)
    return count


# ------------------------------------------------------------------------------------------------
# What the docs put in code: (line number, text, kind) of every inline span and of every command
# line of a fenced block (a line ending in '\' joined with the next by a line end); the line
# number is that of the text's first line.


def code_texts(doc):
    out = []
    for start, text in doc.paragraphs:
        for s, _, content in code_spans(text):
            out.append((line_of(start, text, s), content, "span"))
    pending, pending_line = "", 0
    previous = None
    for number, line in doc.code_lines:
        if previous is not None and number != previous + 1 and pending:
            out.append((pending_line, pending, "block"))  # another block: never joined
            pending = ""
        previous = number
        if not pending:
            pending_line = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + "\n"
            continue
        out.append((pending_line, pending + line, "block"))
        pending = ""
    if pending:
        out.append((pending_line, pending, "block"))
    return out


# ------------------------------------------------------------------------------------------------
# Config keys.


def parse_print_config(text):
    """{section: set(keys)} from --print-config's output: `section:` lines at the margin, each
    key an indented `  name: value` line under it; `#` lines (the derived values) are not keys."""
    schema = {}
    section = None
    for line in text.split("\n"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*):\s*$", line)
        if m:
            section = m.group(1)
            schema.setdefault(section, set())
            continue
        m = re.match(r"^[ \t]+([A-Za-z_][A-Za-z0-9_]*):(?:\s|$)", line)
        if m and section is not None:
            schema[section].add(m.group(1))
            continue
        section = None  # anything else (a log line) ends the section
    return {s: k for s, k in schema.items() if k}


def key_pattern(sections):
    names = "|".join(sorted((re.escape(s) for s in sections), key=len, reverse=True))
    # Not preceded by a word character, '.', '/', '-' or ':' (a path, `ocl::data.x`, a longer
    # dotted name); the name is not followed by one of those either (`train.log.1`, `data.path/x`).
    return re.compile(r"(?<![\w./:-])(" + names + r")\.([A-Za-z0-9_]+)(?![\w./-]|:[\w/])")


def check_keys(doc, schema, problems):
    pattern = key_pattern(schema.keys())
    known = {"%s.%s" % (s, k) for s, keys in schema.items() for k in keys} | set(KEY_ALIASES)
    count = 0
    for number, text, _ in code_texts(doc):
        for m in pattern.finditer(text):
            key = "%s.%s" % (m.group(1), m.group(2))
            if key not in known and m.group(2) in FILE_EXTENSIONS:
                continue
            count += 1
            if key not in known:
                problems.at(doc, number + text.count("\n", 0, m.start()),
                             "config key `%s` is not in ocl_pretrain --print-config" % key)
    return count


# ------------------------------------------------------------------------------------------------
# App flags.


def parse_help(text):
    """The --long names of an app's CLI11 --help: from the option column of each line that starts
    (after spaces) with '-' ("  --config TEXT REQUIRED   ...", "  -h,--help   ...", CLI11 2.4's
    "  -h,     --help"), never from the descriptions."""
    flags = set()
    for line in text.split("\n"):
        m = re.match(r"^\s*(-{1,2}[A-Za-z0-9][A-Za-z0-9_-]*(?:\s*,\s*-{1,2}[A-Za-z0-9][A-Za-z0-9_-]*)*)",
                     line)
        if m:
            flags.update(re.findall(r"--[A-Za-z0-9][A-Za-z0-9_-]*", m.group(1)))
    return flags


def shell_words(text):
    text = re.sub(r"(^|\s)#.*$", "", text, flags=re.M)  # a shell comment
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        return list(lexer)
    except ValueError:  # unbalanced quotes: words by spaces
        return text.split()


def app_name(word):
    base = word.rstrip("/").rsplit("/", 1)[-1]
    return base if base in APPS else None


def app_commands(text):
    """(app, [flags]) for each command in `text` whose command is an app (directly, or after a
    launcher's own options); a word that is only an argument (`--target ocl_pretrain`) is no
    command."""
    found = []
    segment = []
    for word in shell_words(text) + [";"]:
        if word not in SEPARATORS:
            segment.append(word)
            continue
        words = segment
        segment = []
        i = 0
        while i < len(words) and ENV_ASSIGNMENT.match(words[i]):
            i += 1
        if i == len(words):
            continue
        first = words[i].rsplit("/", 1)[-1]
        app_at = None
        if app_name(words[i]):
            app_at = i
        elif first in LAUNCHERS:
            for j in range(i + 1, len(words)):
                if app_name(words[j]):
                    app_at = j
                    break
        if app_at is None:
            continue
        flags = []
        for w in words[app_at + 1:]:
            m = FLAG.match(w)
            if m:
                flags.append(m.group(0))
        found.append((app_name(words[app_at]), flags))
    return found


def apps_in_heading(heading):
    apps = []
    for _, _, content in code_spans(heading):
        for word in content.split():
            name = app_name(word.strip(",.;:()"))
            if name and name not in apps:
                apps.append(name)
    return apps


def check_flags(doc, app_flags, problems):
    """app_flags(app) -> set of flags, or None when the app cannot be asked (already reported)."""
    count = 0
    for number, text, kind in code_texts(doc):
        commands = app_commands(text)
        if not commands and kind == "span" and text.lstrip().startswith("--"):
            apps = apps_in_heading(doc.heading_before(number))
            if apps:
                flags = [FLAG.match(w).group(0) for w in shell_words(text) if FLAG.match(w)]
                commands = [(tuple(apps), flags)]
        for apps, flags in commands:
            apps = apps if isinstance(apps, tuple) else (apps,)
            cursor = 0
            for flag in flags:
                count += 1
                # The flag's own line, where a command runs over several ('\' line ends, a span
                # broken over lines).
                m = re.compile(r"(?<!\S)" + re.escape(flag) + r"(?![A-Za-z0-9_-])").search(text, cursor)
                line = number
                if m:
                    cursor = m.end()
                    line = number + text.count("\n", 0, m.start())
                known = [app_flags(a) for a in apps]
                if any(k is None for k in known):
                    continue
                if not any(flag in k for k in known):
                    problems.at(doc, line, "%s does not accept %s (not in its --help)" %
                                 (" or ".join(apps), flag))
    return count


# ------------------------------------------------------------------------------------------------


def run(command, cwd):
    try:
        result = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    if result.returncode != 0:
        return None, "exit status %d: %s" % (result.returncode,
                                             (result.stderr.strip() or result.stdout.strip())
                                             .split("\n")[-1])
    return result.stdout, None


def documents(repo):
    paths = [os.path.join(repo, "README.md"), os.path.join(repo, "CONTRIBUTING.md")]
    paths += sorted(glob.glob(os.path.join(repo, "docs", "*.md")))
    paths += sorted(glob.glob(os.path.join(repo, "dev", "*.md")))
    paths = [p for p in paths if os.path.isfile(p)]
    return [Doc(p, os.path.relpath(p, repo), order) for order, p in enumerate(paths)]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", required=True, help="the repository's root")
    parser.add_argument("--apps", help="the folder of the built apps (build/apps)")
    parser.add_argument("--links-only", action="store_true",
                        help="check links only (no apps needed)")
    args = parser.parse_args(argv)
    if not args.links_only and not args.apps:
        parser.error("--apps is needed unless --links-only is given")
    repo = os.path.abspath(args.repo)
    problems = Problems()
    docs = documents(repo)
    if not docs:
        problems.add(repo, "no README.md, CONTRIBUTING.md or docs/*.md")

    links = sum(check_links(doc, repo, problems) for doc in docs)
    keys = flags = 0
    if not args.links_only:
        apps_dir = os.path.abspath(args.apps)
        pretrain = os.path.join(apps_dir, "ocl_pretrain")
        config = os.path.join(repo, "configs", "quickstart.yaml")
        out, error = run([pretrain, "--config", config, "--print-config"], repo)
        schema = parse_print_config(out) if out is not None else {}
        if error:
            problems.add(pretrain, "--print-config failed: " + error)
        elif not schema:
            problems.add(pretrain, "--print-config printed no section with keys")
        else:
            keys = sum(check_keys(doc, schema, problems) for doc in docs)

        helps = {}

        def app_flags(app):
            if app not in helps:
                path = os.path.join(apps_dir, app)
                out, error = run([path, "--help"], repo)
                helps[app] = parse_help(out) if out is not None else None
                if error:
                    problems.add(path, "--help failed: " + error)
                elif not helps[app]:
                    problems.add(path, "--help named no --flag")
                    helps[app] = None
            return helps[app]

        flags = sum(check_flags(doc, app_flags, problems) for doc in docs)

    for line in problems.lines:
        print(line)
    sys.stdout.flush()
    checked = "%d links" % links
    if not args.links_only:
        checked += ", %d config keys, %d app flags" % (keys, flags)
    found = problems.lines
    print("check_docs: %s in %d file%s (%s checked)" %
          ("%d problem%s" % (len(found), "" if len(found) == 1 else "s") if found else
           "no problems", len(docs), "" if len(docs) == 1 else "s", checked))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
