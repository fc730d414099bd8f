"""Finding pipelines by reference: ``path/to/file.py:name`` or ``package.module:name``.

A run records its pipeline's reference so another process (``flujo runs resume``) can load the
same pipeline again.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from flujo.domain.errors import TargetError
from flujo.domain.models import Pipeline, Step


def _load_file(path: Path) -> ModuleType:
    # A stable module name per file, so loading the same file twice reuses the module.
    name = "_flujo_target_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # Like `python file.py`: the file's folder is importable for its sibling modules.
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_target(ref: str) -> Pipeline:
    """The pipeline ``ref`` names: a :class:`Pipeline` attribute, or a zero-argument function
    returning one. Every failure is a :class:`TargetError` saying what is wrong."""
    where, sep, attr = ref.rpartition(":")
    if not sep or not where or not attr:
        raise TargetError(f"target {ref!r}: expected path/to/file.py:name or module:name")
    try:
        if where.endswith(".py") or "/" in where or "\\" in where:
            path = Path(where).expanduser().resolve()
            if not path.is_file():
                raise TargetError(f"target {ref!r}: no such file {path}")
            module = _load_file(path)
        else:
            try:
                module = importlib.import_module(where)
            except ModuleNotFoundError as exc:
                if exc.name and where.startswith(exc.name):
                    raise TargetError(f"target {ref!r}: no module named {exc.name!r}") from None
                raise
    except TargetError:
        raise
    except Exception as exc:
        raise TargetError(
            f"target {ref!r}: importing it raised {type(exc).__name__}: {exc}"
        ) from exc
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise TargetError(f"target {ref!r}: {where} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Pipeline | Step):
        try:
            obj = obj()
        except TypeError as exc:
            raise TargetError(f"target {ref!r}: calling {attr}() failed: {exc}") from exc
    if isinstance(obj, Step):
        return Pipeline([obj])  # a single step is a one-step pipeline
    if not isinstance(obj, Pipeline):
        raise TargetError(
            f"target {ref!r}: {attr} is a {type(obj).__name__}, not a Pipeline or a Step "
            "(or a function returning one)"
        )
    return obj


def locate_pipeline(pipeline: Pipeline, defined_as: Pipeline | Step | None = None) -> str | None:
    """A reference that loads ``pipeline`` again, if it is a module-level attribute.

    ``defined_as`` is the object the module holds when that is not ``pipeline`` itself (a bare
    Step the runner wrapped in a one-step pipeline).
    """
    module = sys.modules.get(pipeline.defined_in or "")
    if module is None:
        return None
    wanted = pipeline if defined_as is None else defined_as
    for attr, value in vars(module).items():
        if value is wanted:
            if _importable(module.__name__):
                return f"{module.__name__}:{attr}"
            # __main__, a file loaded by path, or a module imported under a name another
            # process cannot import: refer to the file instead.
            file = getattr(module, "__file__", None)
            return f"{Path(file).resolve()}:{attr}" if file else None
    return None


def _importable(name: str) -> bool:
    if name == "__main__" or name.startswith("_flujo_target_"):
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
