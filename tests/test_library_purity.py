"""The stage packages are libraries: they parse no argv, print nothing and write no files.

An AST scan of every module under theory/, kernels/, simulate/ and validate/ (docstrings are
string constants, so doctests in them are not calls and do not count). Everything that writes
— run folders, stores, downloads, caches, figures — lives in the app layer ``surgelab/``.
The scanner itself is checked on snippets that must be caught, and on the data module as it
was before fetching and the decoded-array cache moved to ``surgelab.datasets``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LIBRARIES = ("theory", "kernels", "simulate", "validate")

#: Modules whose import alone means argv parsing, a database or temporary files.
BANNED_IMPORTS = {"argparse", "sqlite3", "tempfile", "shutil"}
#: ``<module>.<function>`` calls that write, move or delete files (``np`` = numpy).
BANNED_MODULE_CALLS = {
    ("os", "replace"),
    ("os", "rename"),
    ("os", "remove"),
    ("os", "unlink"),
    ("os", "mkdir"),
    ("os", "makedirs"),
    ("os", "rmdir"),
    ("os", "write"),
    ("np", "save"),
    ("np", "savez"),
    ("np", "savez_compressed"),
    ("np", "savetxt"),
    ("numpy", "save"),
    ("json", "dump"),
    ("pickle", "dump"),
    ("torch", "save"),
    ("plt", "savefig"),
    ("urllib", "request"),
}
#: Methods that write whatever object they are called on (Path, figure, array, file).
BANNED_METHODS = {
    "write_text",
    "write_bytes",
    "mkdir",
    "touch",
    "unlink",
    "rmdir",
    "savefig",
    "tofile",
    "to_csv",
    "urlopen",
    "urlretrieve",
}
WRITE_MODES = set("wax+")


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_mode(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and 0 < len(node.value) <= 3
        and set(node.value) <= set("rwaxbt+")
    )


def _open_mode(call: ast.Call, method: bool = False) -> str:
    """The mode of ``open(file, mode)``, or of ``x.open(mode)`` / ``gzip.open(file, mode)``
    (``method``: the first string argument that looks like a mode); ``"r"`` when none."""
    for kw in call.keywords:
        if kw.arg == "mode":
            if isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                return kw.value.value
            return "?"  # a computed mode: cannot prove it only reads
    if not method:
        if len(call.args) < 2:
            return "r"
        m = call.args[1]
        return m.value if isinstance(m, ast.Constant) and isinstance(m.value, str) else "?"
    return next((a.value for a in call.args[:2] if _is_mode(a)), "r")


def violations(source: str, filename: str = "<src>") -> list[str]:
    """``"file:line: what"`` for each file write, print, argparse or sqlite3 use in ``source``."""
    out: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for m in mods:
                if m and m.split(".")[0] in BANNED_IMPORTS:
                    out.append(f"{where}: imports {m}")
            if isinstance(node, ast.ImportFrom) and node.module in ("os", "numpy", "shutil"):
                for a in node.names:
                    if (node.module.replace("numpy", "np"), a.name) in BANNED_MODULE_CALLS:
                        out.append(f"{where}: imports {node.module}.{a.name}")
            continue
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name):
            if f.id == "print":
                out.append(f"{where}: print(...)")
            elif f.id == "open" and set(_open_mode(node)) & (WRITE_MODES | {"?"}):
                out.append(f"{where}: open(..., {_open_mode(node)!r})")
        elif isinstance(f, ast.Attribute):
            owner = _name(f.value)
            if (owner, f.attr) in BANNED_MODULE_CALLS:
                out.append(f"{where}: {owner}.{f.attr}(...)")
            elif f.attr in BANNED_METHODS:
                out.append(f"{where}: .{f.attr}(...)")
            elif f.attr in ("open", "ZipFile") and set(_open_mode(node, True)) & WRITE_MODES:
                out.append(f"{where}: .{f.attr}(..., {_open_mode(node, True)!r})")
            elif f.attr == "write" and owner in ("stdout", "stderr"):
                out.append(f"{where}: {owner}.write(...)")
    return out


def _library_files() -> list[Path]:
    files = sorted(p for lib in LIBRARIES for p in (REPO / lib).rglob("*.py"))
    assert len(files) > 20, "the scan found too few library modules: is REPO right?"
    return files


@pytest.mark.parametrize("lib", LIBRARIES)
def test_libraries_write_no_files_print_nothing_parse_no_argv(lib):
    bad = []
    for path in _library_files():
        if path.relative_to(REPO).parts[0] == lib:
            bad += violations(path.read_text(), str(path.relative_to(REPO)))
    assert bad == [], "library code that writes, prints or parses argv:\n" + "\n".join(bad)


CAUGHT = [
    "open(p, 'w')",
    "open(p, mode='wb')",
    "open(p, 'a')",
    "open(p, 'r+')",
    "open(p, m)",
    "p.open('w')",
    "gzip.open(p, 'wb')",
    "zipfile.ZipFile(p, 'w')",
    "p.write_text('x')",
    "p.write_bytes(b'x')",
    "p.mkdir(parents=True)",
    "np.save(p, a)",
    "np.savez(p, a=a)",
    "os.replace(a, b)",
    "os.rename(a, b)",
    "os.makedirs(d)",
    "fig.savefig('x.png')",
    "print('hello')",
    "import argparse",
    "import sqlite3",
    "from tempfile import mkstemp",
    "import urllib.request\nurllib.request.urlopen(u)",
    "json.dump(obj, f)",
    "torch.save(state, p)",
    "sys.stderr.write('x')",
]
ALLOWED = [
    "open(p)",
    "open(p, 'rb')",
    "gzip.open(p, 'rb')",
    "zipfile.ZipFile(p)",
    "sp.Interval.open(a, 1)",
    "p.read_bytes()",
    "np.load(p)",
    "s.replace('a', 'b')",
    "dataclasses.replace(cfg, x=1)",
    "json.dumps(obj)",
    "h.update(b)",
    "buf = io.BytesIO()",
    'def f():\n    """Examples:\n      >>> print(1)\n      1\n    """',
]


@pytest.mark.parametrize("src", CAUGHT)
def test_the_scan_catches(src):
    assert violations(src), src


@pytest.mark.parametrize("src", ALLOWED)
def test_the_scan_allows(src):
    assert violations(src) == [], src


def test_the_scan_fails_on_the_data_module_that_downloaded_and_cached():
    """validate/data.py before the move (abridged: its fetcher, download and decoded cache)."""
    old = """
import tempfile
import urllib.request

def _default_fetch(url, dest):
    with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
        while block := r.read(1 << 20):
            f.write(block)

def download(name, dest_root=None):
    dest = Path(dest_root if dest_root is not None else cache_dir()) / name
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".x.", suffix=".part", dir=dest)
    FETCH(url, Path(tmp))
    os.replace(tmp, target)

def _cached(key, build, names):
    folder = cache_dir() / "decoded" / key
    arrays = build()
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        tmp = folder / f".{n}.tmp.npy"
        np.save(tmp, arrays[n])
        os.replace(tmp, folder / f"{n}.npy")
    return arrays
"""
    found = " ".join(violations(old))
    for what in ("tempfile", "urlopen", "open(..., 'wb')", "mkdir", "np.save", "os.replace"):
        assert what in found, what
