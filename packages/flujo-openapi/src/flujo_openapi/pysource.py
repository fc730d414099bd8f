"""Python source from spec strings: literals, docstrings, and the inertness check.

Every string a spec supplies (titles, descriptions, names, enum values, defaults, URLs...)
reaches the generated code only through :func:`py_str`, :func:`py_lit` or
:func:`py_docstring`: ASCII-only, fully escaped literals, so no character of the spec can end
the literal, start a comment or a new line of code, or mean anything to a tool reading the
file (NUL, U+2028, a lone surrogate, ``\\N{...}``, braces). :func:`check_generated` then
verifies every generated module -- including what datamodel-code-generator wrote -- before
it is formatted or written: it must parse, and it may only import, define and call what the
templates do. Anything else is a bug in the generator, reported as an error (fail closed),
never written to disk.
"""

from __future__ import annotations

import ast

from flujo_openapi.errors import GenerationError

__all__ = [
    "check_generated",
    "escape_char",
    "py_docstring",
    "py_lit",
    "py_str",
]

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def escape_char(ch: str) -> str:
    """``ch`` as it appears inside a double-quoted, ASCII-only Python literal."""
    escaped = _ESCAPES.get(ch)
    if escaped is not None:
        return escaped
    code = ord(ch)
    if 32 <= code < 127:
        return ch
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _pieces(value: str) -> list[str]:
    return [escape_char(ch) for ch in value]


def py_str(value: str) -> str:
    """A one-line, ASCII-only double-quoted literal whose value is ``value``."""
    return '"' + "".join(_pieces(value)) + '"'


def _chunks(pieces: list[str], width: int) -> list[str]:
    """Join escaped ``pieces`` into chunks of about ``width`` characters, preferring to cut
    after a space; an escape sequence is never cut."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    last_space = -1
    for piece in pieces:
        current.append(piece)
        size += len(piece)
        if piece == " ":
            last_space = len(current)
        if size >= width:
            cut = last_space if last_space > len(current) // 2 else len(current)
            chunks.append("".join(current[:cut]))
            current = current[cut:]
            size = sum(len(p) for p in current)
            last_space = -1
    if current or not chunks:
        chunks.append("".join(current))
    return chunks


def py_lit(value: str, indent: int = 0, width: int = 72) -> str:
    """:func:`py_str`, or for a long value a parenthesized implicit concatenation of short
    literals over several lines (a single expression wherever it is placed)."""
    pieces = _pieces(value)
    if sum(len(p) for p in pieces) <= width:
        return '"' + "".join(pieces) + '"'
    pad = " " * (indent + 4)
    inner = "\n".join(f'{pad}"{chunk}"' for chunk in _chunks(pieces, width))
    return "(\n" + inner + "\n" + " " * indent + ")"


def py_split(value: str, width: int = 60) -> str:
    """``value`` as a parenthesized concatenation of short literals on one line (the
    formatter lays it out); a single literal when short."""
    literals = [f'"{chunk}"' for chunk in _chunks(_pieces(value), width)]
    return literals[0] if len(literals) == 1 else "(" + " ".join(literals) + ")"


def _doc_pieces(line: str) -> list[str]:
    # In a docstring a quote is escaped too: no run of quotes can close it early, and a
    # quote at the end cannot merge with the closing ones.
    return [escape_char(ch) if ch != "\t" else "    " for ch in line]


def _wrap(pieces: list[str], width: int) -> list[str]:
    """Greedy word wrap of escaped ``pieces``; words longer than ``width`` are cut between
    pieces (never inside an escape sequence)."""
    words: list[list[str]] = [[]]
    for piece in pieces:
        if piece == " ":
            words.append([])
        else:
            words[-1].append(piece)
    lines: list[str] = []
    current = ""
    for word_pieces in words:
        if not word_pieces:
            continue
        word = "".join(word_pieces)
        if current and len(current) + 1 + len(word) <= width:
            current += " " + word
            continue
        if current:
            lines.append(current)
            current = ""
        while len(word) > width:
            taken, size = 0, 0
            while taken < len(word_pieces) and size + len(word_pieces[taken]) <= width:
                size += len(word_pieces[taken])
                taken += 1
            taken = max(taken, 1)
            lines.append("".join(word_pieces[:taken]))
            word_pieces = word_pieces[taken:]
            word = "".join(word_pieces)
        current = word
    if current:
        lines.append(current)
    return lines


def py_docstring(value: str, indent: int, line_length: int = 88) -> str:
    """A triple-quoted, ASCII-only docstring for ``value`` (re-wrapped to ``line_length``),
    without indentation before the opening quotes and without a trailing newline."""
    pad = " " * indent
    width = max(30, line_length - indent - 4)
    lines: list[str] = []
    for paragraph in value.strip().split("\n"):
        lines.extend(_wrap(_doc_pieces(paragraph.rstrip()), width) or [""])
    while lines and not lines[-1]:
        lines.pop()
    lines = lines or ["No description."]
    if len(lines) == 1 and len(lines[0]) + indent + 6 <= line_length:
        return '"""' + lines[0] + '"""'
    body = "\n".join((pad + line) if line else "" for line in lines)
    return '"""\n' + body + "\n" + pad + '"""'


# --------------------------------------------------------------------------- the check

_IMPORTABLE = (
    "__future__",
    "collections.abc",
    "datetime",
    "decimal",
    "enum",
    "flujo",
    "flujo_openapi.runtime",
    "httpx",
    "ipaddress",
    "pathlib",
    "pydantic",
    "pydantic_ai",
    "typing",
    "typing_extensions",
    "uuid",
)
"""Modules the generated code may import (and their submodules); relative imports (the
generated package's own modules) are always allowed."""

_CALLABLE = frozenset(
    {
        # pydantic and typing, as datamodel-code-generator writes them
        "AnyUrl",
        "ConfigDict",
        "Decimal",
        "Field",
        "StringConstraints",
        "TypeAliasType",
        "TypeVar",
        "UUID",
        "cast",
        "conbytes",
        "condecimal",
        "confloat",
        "conint",
        "conlist",
        "constr",
        "date",
        "datetime",
        "time",
        "timedelta",
        # the templates of operations.py, _config.py and __init__.py
        "Endpoint",
        "Operation",
        "Param",
        "PipelineDefinitionError",
        "SecurityScheme",
        "_make_client",
        "build_agent",
        "make_agent",
        "make_client",
        "next",
        "operation_step",
        "sorted",
    }
)
_METHODS = frozenset({"call", "get", "model_rebuild", "update_forward_refs", "values"})
_DUNDERS = frozenset({"__all__", "__annotations__"})
_DECORATORS = frozenset({"classmethod", "staticmethod", "property"})
_FORBIDDEN_NODES = (
    ast.Lambda,
    ast.NamedExpr,
    ast.Global,
    ast.Nonlocal,
    ast.Delete,
    ast.With,
    ast.AsyncWith,
    ast.Try,
    ast.While,
    ast.Yield,
    ast.YieldFrom,
    ast.Starred,
)


def _callee(node: ast.expr, aliases: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        name = aliases.get(node.id, node.id)
        return name if name in _CALLABLE else None
    if isinstance(node, ast.Attribute) and node.attr in _METHODS:
        return node.attr
    return None


def check_generated(code: str, path: str) -> None:
    """Verify that the generated module ``path`` is valid Python and inert (see the module
    docs).

    :raises GenerationError: it does not parse, or imports, calls or uses something the
        generator never emits (which means a spec string leaked into the code).
    """
    try:
        tree = ast.parse(code, filename=path)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        shown = ""
        if line:
            text = code.split("\n")[line - 1]
            shown = f": {text[:120]!r}"
        raise GenerationError(
            f"generated {path} is not valid Python (line {line}: "
            f"{getattr(exc, 'msg', exc)}){shown}; this is a bug in flujo-openapi"
        ) from None

    def refuse(node: ast.AST, what: str) -> None:
        raise GenerationError(
            f"generated {path} line {getattr(node, 'lineno', '?')}: {what}; refusing to write "
            "code the generator does not emit (a spec string leaked into code?)"
        )

    # datamodel-code-generator imports ``Field as Field_aliased`` when a model has a field
    # named ``Field``: a call is judged by the name it was imported as.
    aliases = {
        alias.asname: alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname
    }
    for node in ast.walk(tree):
        if isinstance(node, _FORBIDDEN_NODES):
            refuse(node, f"unexpected {type(node).__name__}")
        elif isinstance(node, ast.ImportFrom) and not node.level:
            module = node.module or ""
            if not any(module == m or module.startswith(m + ".") for m in _IMPORTABLE):
                refuse(node, f"import from {module!r}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not any(alias.name == m or alias.name.startswith(m + ".") for m in _IMPORTABLE):
                    refuse(node, f"import of {alias.name!r}")
        elif isinstance(node, ast.Call):
            if _callee(node.func, aliases) is None:
                refuse(node, f"call of {ast.unparse(node.func)[:60]!r}")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            refuse(node, f"attribute {node.attr[:60]!r}")
        elif isinstance(node, ast.Name) and node.id.startswith("__") and node.id not in _DUNDERS:
            refuse(node, f"name {node.id[:60]!r}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, bytes):
            refuse(node, "a bytes literal")
        elif isinstance(node, ast.ClassDef) and node.keywords:
            refuse(node, "a class keyword (metaclass?)")
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            for decorator in node.decorator_list:
                if not (isinstance(decorator, ast.Name) and decorator.id in _DECORATORS):
                    refuse(decorator, f"decorator {ast.unparse(decorator)[:60]!r}")
