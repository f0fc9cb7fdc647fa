"""Line coverage of a fuzz target's modules, measured by replaying a corpus (stdlib tracing, no atheris).

libFuzzer's ``cov``/``ft`` counters say how many edges the instrumented bytecode reached, not how much of the
code that is; this module answers the second question. :func:`replay` runs every input of a corpus through the
target under ``sys.settrace``, recording the lines executed in the target's modules; :func:`executable_lines`
takes a module's executable lines from the compiled code objects of its functions (``co_lines``): the module's
top level and class bodies run once at import, not per input, and are not counted.
"""
from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from types import CodeType
from typing import Callable, Iterable, NamedTuple


class ModuleCoverage(NamedTuple):
    module: str
    hit: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.hit / self.total if self.total else 0.0


def executable_lines(path: str) -> set[int]:
    """Line numbers that carry bytecode of a function (nested ones included) in the source file ``path``."""
    lines: set[int] = set()
    stack: list[CodeType] = [compile(Path(path).read_text(), path, "exec")]
    while stack:
        code = stack.pop()
        if code.co_flags & inspect.CO_NEWLOCALS:  # a function, not the module or a class body
            lines.update(line for _start, _end, line in code.co_lines() if line is not None)
        stack.extend(c for c in code.co_consts if isinstance(c, CodeType))
    return lines


def replay(fn: Callable[[bytes], None], inputs: Iterable[bytes], modules: Iterable[str]) -> list[ModuleCoverage]:
    """Run ``fn`` on every input (exceptions are ignored: findings are not this module's business) and return
    the line coverage of each of ``modules`` (importable names)."""
    files = {str(Path(importlib.import_module(m).__file__).resolve()): m for m in modules}
    hits: dict[str, set[int]] = {f: set() for f in files}
    by_code: dict[str, set[int] | None] = {}

    def tracer(frame, event, _arg):
        name = frame.f_code.co_filename
        seen = by_code.get(name, False)
        if seen is False:
            seen = by_code[name] = hits.get(str(Path(name).resolve()))
        if seen is None:
            return None
        seen.add(frame.f_lineno)

        def local(frame, event, _arg):
            if event == "line":
                seen.add(frame.f_lineno)
            return local
        return local

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        for data in inputs:
            try:
                fn(data)
            except Exception:  # noqa: BLE001 - a finding; the fuzz run reports it
                pass
    finally:
        sys.settrace(old)
    out = []
    for path, module in files.items():
        executable = executable_lines(path)
        out.append(ModuleCoverage(module, len(hits[path] & executable), len(executable)))
    return out
