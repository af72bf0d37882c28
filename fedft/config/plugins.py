"""User code a config names: `[plugins] modules` and `package.module:factory` names.

The registries (models, datasets, strategies) live in each process, so code that only
the driver imported is unknown to a Ray worker or a SuperNode. A config therefore names
the code itself and every process that builds from it imports it: the driver while it
checks the config (before Ray starts, so a bad name is one line and exit 2), each
worker when it first sees the run's config (`fedft.fl.context.run_context`).
Modules are found on `sys.path`; the current folder is added to it (absolute, so Ray
workers, which get the driver's `sys.path` as PYTHONPATH, find the same files).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from fedft.errors import FedftError

_MODULE = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_IMPORT_PATH = re.compile(rf"^({_MODULE}):({_MODULE})$")
_FIX = "put the module in the current folder or on PYTHONPATH (Ray workers and SuperNodes import it too), or install its package."


def is_import_path(name: str) -> bool:
    """`package.module:factory` (as opposed to a registry name such as "seed_cnn" or "hf:<hub id>")."""
    return _IMPORT_PATH.match(name) is not None


def _with_current_folder() -> None:
    cwd = os.path.abspath(os.getcwd())
    if cwd not in sys.path:
        sys.path.append(cwd)


def import_module(name: str, field: str) -> ModuleType:
    """Import `name` or raise the one-line FedftError naming `field`."""
    _with_current_folder()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise FedftError(field, f"cannot import '{name}': no module named '{exc.name}'.", _FIX) from None
        raise FedftError(field, f"importing '{name}' failed: {_one_line(exc)}.", f"install what '{name}' needs.") from None
    except Exception as exc:  # noqa: BLE001  any error in the user's module is reported as one line
        raise FedftError(field, f"importing '{name}' failed: {_one_line(exc)}.", f"fix '{name}' (python -c 'import {name}' shows the traceback).") from None


def import_object(path: str, field: str) -> Any:
    """The callable `package.module:attribute` names (imported in this process)."""
    match = _IMPORT_PATH.match(path)
    if match is None:
        raise FedftError(field, f"'{path}' is not an import path.", "write it as package.module:factory.")
    module_name, attribute = match.groups()
    obj: Any = import_module(module_name, field)
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise FedftError(field, f"module '{module_name}' has no '{attribute}'.", f"define {attribute} in {module_name}, or fix the name after ':'.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise FedftError(field, f"'{path}' is not a function or class (it is a {type(obj).__name__} value).", "name the factory that builds it.")
    return obj


def lookup(table: dict[str, Any], name: str, field: str, kind: str, names: list[str]) -> Any:
    """What a registry holds under `name`, or the callable `package.module:function` names
    (imported in this process); else the one-line error listing `names` and both ways in."""
    if name in table:
        return table[name]
    if is_import_path(name):
        return import_object(name, field)
    raise FedftError(field, f"unknown {kind} '{name}'.",
                     f"use one of: {', '.join(names)}; or your own as package.module:function, or register it in a module listed in [plugins] modules.")


def calling_module() -> str:
    """The module that called the function calling this one (`register_*` records who
    registered a name, so a check can tell a worker would not import it)."""
    return str(sys._getframe(2).f_globals.get("__name__", "?"))


def workers_import(origin: str, plugins: Iterable[str]) -> bool:
    """Whether a process that imports fedft and `plugins` also imports module `origin`."""
    return origin.split(".")[0] in ("fedft", "strategies") or any(origin == m or origin.startswith(m + ".") for m in plugins)


def import_plugins(modules: Iterable[str]) -> None:
    """Import each of `[plugins] modules`, so their `register_*` decorators run in this process."""
    for name in modules:
        import_module(name, "plugins.modules")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
