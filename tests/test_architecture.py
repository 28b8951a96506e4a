"""The import contract (docs/architecture.md): arrows only point down, read from every module's syntax tree.

cli -> server | client -> tools | engine -> jobtool -> context -> manager -> metrics -> store -> the core's
vocabulary (models, states, errors, events, results, settings, retry, polling, logs). A module may import any part
below its own and the parts beside it, except the independent pairs (`|`). Imports under TYPE_CHECKING and inside
functions count: they are arrows too. Beside the layers, the core imports nothing from the MCP SDK, and
only server/sdk.py reaches into the SDK's private parts.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "vibe_jobs"

# The level of each part (a top-level module, or a package with everything in it). A new part must be placed here.
LEVELS: dict[str, int] = {
    **dict.fromkeys(["models", "states", "errors", "events", "results", "settings", "retry", "polling", "logs"], 10),
    "questions": 10,  # what a running job asks (elicitation, sampling) and the checks of answers
    "blocks": 10,  # content blocks and numbers as the MCP carries them, checked without the SDK
    "testing": 55,  # fixtures (the conformance "everything" server, counting stores, ports): above server, below cli
    "recent": 10,  # a bounded map of the values last remembered (manager, SQLite store)
    "figures": 10,  # plain data of the statistics, shared by metrics and the stores that compute them
    "durations": 10,  # learned run times per tool: plain data and arithmetic, persisted by the stores
    "counters": 25,  # the process's counters and histograms (/metrics), kept by the manager
    "ids": 10,  # job ids: random bits from the operating system, read a pool at a time
    "owners": 10,  # owner ids: a process of a program (stores find a program's jobs by their start)
    "clocks": 25,  # a shared store's time and the steps of this machine's clock (the manager's)
    "identity": 10,  # who is asking (Viewer) and what it may see: used by the manager and every surface
    "redact": 10,  # secrets kept out of what is shown (params, URLs): logs, surfaces, the dashboard
    "urls": 10,  # the shape of a server's URL to connect to (call --url, the proxy's upstream URLs)
    "firing": 10,  # when a schedule fires: pure functions of its timing and a given time (croniter, zoneinfo)
    "schedules": 10,  # a schedule as stores keep it and clients see it
    "shared": 10,  # one call at a time, shared by those who ask meanwhile (the manager's server-wide figures)
    "outages": 10,  # the one rule for background work while the store fails (retry with backoff, never exit)
    "store": 20,
    "metrics": 25,  # stores do not import metrics: the manager keeps the figures
    "manager": 30,
    "context": 35,  # a running job's handle on the manager
    "arguments": 33,  # a job tool's argument model and validator (pydantic only)
    "jobtool": 36,  # a job tool's spec; owns its argument validator; takes a JobContext
    "engine": 40,
    "tools": 40,  # built-in job tools only: they register through a protocol, not the server
    "vibe_jobs": 45,  # the package's front door re-exports the library (JobServer lazily, see ALLOWED)
    "server": 50,
    "client": 50,  # the MCP client library: it speaks MCP (imports mcp) but uses nothing of the server
    "cli": 60,
    "__main__": 60,
}
# Levels inside a part: a module on top of its part (built on the part's public pieces) that nothing else in the
# part imports. `server.proxy` (vibe-jobs proxy) builds on JobServer and wrap; the server never needs the proxy.
INNER_LEVELS: dict[str, int] = {"vibe_jobs.server.proxy": 55}
INDEPENDENT = [{"server", "client"}, {"tools", "engine"}]  # one level, and neither imports the other
CORE_LEVEL = 36  # parts at or below it are the core: no MCP SDK, no web stack
SDK_PACKAGES = ("mcp", "mcp_types", "starlette", "sse_starlette", "uvicorn")
SDK_SEAM = "vibe_jobs.server.sdk"  # the one module that touches the SDK's private parts (checked by version)
PRIVATE_NAMES_OF_PUBLIC_API = {"_replace", "_asdict", "_fields", "_make", "_exit"}  # namedtuple, os._exit

# Known upward arrows, each with the branch that removes it. Nothing else is allowed.
ALLOWED: dict[tuple[str, str], str] = {
    ("vibe_jobs", "vibe_jobs.server.jobserver"): "by design: `vibe_jobs.JobServer` is imported on first use only "
    "(and under TYPE_CHECKING, for type checkers), so `import vibe_jobs` never imports mcp",
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports (a module, or a package a name is taken from)
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield module_name(path), path


def imports_of(module: str, path: Path) -> Iterator[Import]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (Import(module, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield Import(module, _absolute(package, node), node.lineno)


def _absolute(package: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def part(module: str) -> str:
    """`vibe_jobs.store.sqlite.link` -> `store`; the package itself -> `vibe_jobs`."""
    return module.split(".")[1] if "." in module else module


def level(module: str) -> int:
    name = part(module)
    assert name in LEVELS, f"{module}: place the part '{name}' on a level in LEVELS (tests/test_architecture.py)"
    return LEVELS[name]


def own_imports() -> list[Import]:
    return [imp for module, path in modules() for imp in imports_of(module, path)]


def is_ours(target: str) -> bool:
    return target == "vibe_jobs" or target.startswith("vibe_jobs.")


def upward(imp: Import) -> bool:
    """An arrow to a higher level, or across an independent pair."""
    here, there = part(imp.module), part(imp.target)
    if not is_ours(imp.target) or here == there:
        return False
    return level(imp.target) > level(imp.module) or {here, there} in INDEPENDENT


def test_every_part_has_a_level() -> None:
    for module, _ in modules():
        level(module)


def test_arrows_only_point_down() -> None:
    wrong = [
        f"{imp.module}:{imp.line} imports {imp.target} (level {level(imp.target)} from level {level(imp.module)})"
        for imp in own_imports()
        if upward(imp) and (imp.module, imp.target) not in ALLOWED
    ]
    assert not wrong, "imports that point up or across (see docs/architecture.md):\n" + "\n".join(wrong)


def inner_level(module: str) -> int | None:
    for prefix, inner in INNER_LEVELS.items():
        if module == prefix or module.startswith(prefix + "."):
            return inner
    return None


def inner_upward(imp: Import) -> bool:
    """An import, from inside a part, of a module on a higher inner level of that part."""
    target = inner_level(imp.target) if is_ours(imp.target) else None
    return target is not None and part(imp.module) == part(imp.target) and (inner_level(imp.module) or 0) < target


def test_nothing_imports_a_part_s_top_from_inside_that_part() -> None:
    """`server.proxy` imports the server; no other server module imports `server.proxy`."""
    wrong = [f"{imp.module}:{imp.line} imports {imp.target}" for imp in own_imports() if inner_upward(imp)]
    assert not wrong, "imports of a part's top level from inside the part:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("module", "target", "wrong"),
    [
        ("vibe_jobs.server.app", "vibe_jobs.server.proxy.tools", True),
        ("vibe_jobs.server.proxy.tools", "vibe_jobs.server.wrap", False),
        ("vibe_jobs.server.proxy.server", "vibe_jobs.server.proxy.upstream", False),
        ("vibe_jobs.cli.proxy", "vibe_jobs.server.proxy", False),
    ],
)
def test_the_inner_rule(module: str, target: str, wrong: bool) -> None:
    assert inner_upward(Import(module, target, 1)) is wrong


def test_every_allowed_exception_still_exists() -> None:
    """An entry in ALLOWED whose import is gone must go too (or it would let the arrow back in unseen)."""
    present = {(imp.module, imp.target) for imp in own_imports()}
    assert set(ALLOWED) <= present, f"remove from ALLOWED: {sorted(set(ALLOWED) - present)}"


def test_the_core_imports_no_mcp_sdk() -> None:
    wrong = [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in own_imports()
        if level(imp.module) <= CORE_LEVEL and imp.target.split(".")[0] in SDK_PACKAGES
    ]
    assert not wrong, "the core (models .. jobtool) must not import the MCP SDK:\n" + "\n".join(wrong)


def test_only_the_sdk_seam_touches_the_sdks_private_parts() -> None:
    """In a module that uses the MCP SDK, `x._name` on anything but self/cls belongs in server/sdk.py."""
    wrong = []
    for module, path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if module == SDK_SEAM or not any(imp.target.split(".")[0] in SDK_PACKAGES for imp in imports_of(module, path)):
            continue
        reached = [node for node in ast.walk(tree) if isinstance(node, ast.Attribute) and _reaches_in(node)]
        wrong += [f"{module}:{node.lineno} {ast.unparse(node)}" for node in reached]
        wrong += [
            f"{imp.module}:{imp.line} imports {imp.target}"
            for imp in imports_of(module, path)
            if imp.target.split(".")[0] in SDK_PACKAGES and any(p.startswith("_") for p in imp.target.split("."))
        ]
    assert not wrong, f"private parts reached outside {SDK_SEAM}:\n" + "\n".join(wrong)


def _reaches_in(node: ast.AST) -> bool:
    """`x._name` where x is not self/cls (dunders and namedtuple's public `_replace` & co. aside)."""
    if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
        return False
    mine = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
    return not mine and node.attr not in PRIVATE_NAMES_OF_PUBLIC_API


# -- the checker itself: each rule catches what it is for -------------------------------------------


@pytest.mark.parametrize(
    ("module", "target", "wrong"),
    [
        ("vibe_jobs.store.memory", "vibe_jobs.manager", True),
        ("vibe_jobs.store.postgres.sql", "vibe_jobs.engine.claims", True),
        ("vibe_jobs.models", "vibe_jobs.store", True),
        ("vibe_jobs.engine.scheduler", "vibe_jobs.server.wrap", True),
        ("vibe_jobs.tools.builtin", "vibe_jobs.engine", True),  # one level: independent
        ("vibe_jobs.server.control", "vibe_jobs.client", True),
        ("vibe_jobs.manager", "vibe_jobs.context", True),
        ("vibe_jobs.cli.main", "vibe_jobs.server.jobserver", False),
        ("vibe_jobs.server.app", "vibe_jobs", False),
        ("vibe_jobs.store.sqlite.store", "vibe_jobs.store.base", False),
        ("vibe_jobs.engine.claims", "vibe_jobs.store.postgres.sql", False),
        ("vibe_jobs.manager", "vibe_jobs.metrics", False),
        ("vibe_jobs.jobtool", "pydantic", False),
        ("vibe_jobs.models", "vibe_jobs.states", False),  # the vocabulary shares one level
    ],
)
def test_the_layer_rule(module: str, target: str, wrong: bool) -> None:
    assert upward(Import(module, target, 1)) is wrong


def test_relative_imports_resolve_to_their_module() -> None:
    node = ast.parse("from ..base import JobStore").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _absolute("vibe_jobs.store.sqlite", node) == "vibe_jobs.store.base"


def test_reaching_in_is_seen() -> None:
    found = [_reaches_in(n) for n in ast.walk(ast.parse("mcp._lowlevel_server; self._x; t._replace(); o.__dict__"))]
    assert found.count(True) == 1


def test_importing_the_package_imports_no_mcp_sdk() -> None:
    """`import vibe_jobs` (a core user: JobManager, job_tool) loads no MCP SDK: `JobServer` comes on first use,
    and for type checkers only under TYPE_CHECKING."""
    probe = f"import sys, vibe_jobs; print(sorted(m for m in sys.modules if m.split('.')[0] in {SDK_PACKAGES}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_every_module_imports_on_its_own_without_a_warning() -> None:
    """Each module imports in a fresh interpreter with warnings as errors: a name deprecated by a newer Python
    (or a dependency) used at import time fails here first, on the Python the suite runs on (`make test-compat`
    runs it on 3.13). `__main__` is left out: importing it runs the CLI."""
    names = [name for name, _ in modules() if not name.endswith("__main__")]
    probe = f"import importlib\nfor name in {names!r}:\n    importlib.import_module(name)"
    done = subprocess.run([sys.executable, "-W", "error", "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_starting_the_cli_or_a_server_runs_no_other_program() -> None:
    """Importing what `vibe-jobs serve` and the other commands import starts no process: croniter's import ran
    `file` on the interpreter (platform.architecture) at every command's start; it is imported at first use."""
    probe = (
        "import sys; seen = []\n"
        "sys.addaudithook(lambda event, args: seen.append(args[1]) if event == 'subprocess.Popen' else None)\n"
        "import vibe_jobs.cli.main, vibe_jobs.server.jobserver, vibe_jobs.tools, vibe_jobs.firing\n"
        "print(seen)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
