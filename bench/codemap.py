"""Benchmark `map_codebase`: a generated 10,000-file mixed tree, then the installed stdlib.

Run: `.venv/bin/python bench/codemap.py`. Each tree is mapped twice: once for speed (files/s),
once under tracemalloc for the peak of Python allocations; ru_maxrss is the process peak.
"""

from __future__ import annotations

import argparse
import random
import resource
import sysconfig
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from vibe_jobs.tools.codemap import CodeMap, map_codebase, render_markdown

PY = '''"""Module {n}."""
import os


class Service{n}(Base):
    """A service."""

    def __init__(self, name: str, retries: int = 3) -> None:
        self.name = name

    async def run(self, *args: str, **kwargs: int) -> list[str]:
        return [os.sep.join(args)]


def helper_{n}(a: int, b=2) -> str:
    return str(a + b)
'''
TS = """// module {n}
import {{ x }} from "./x";

export interface Props{n} {{
  id: number;
  label: string;
}}

export type Id{n} = string | number;

export enum Color{n} {{ Red, Green }}

export class Widget{n} {{
  constructor(private readonly props: Props{n}) {{}}
  render(): string {{ return "<div>" + this.props.label + "</div>"; }}
}}

export const make{n} = async (id: Id{n}): Promise<Widget{n}> => new Widget{n}({{ id, label: "w" }} as any);

export function parse{n}(text: string): number {{
  return Number(text); // "function fake() {{}}"
}}
"""
JS = """/* module {n} */
export function add{n}(a, b) {{ return a + b; }}
export const mul{n} = (a, b) => a * b;
export class Counter{n} {{
  increment() {{ this.n += 1; }}
}}
"""
GO = """package pkg{n}

import "fmt"

type Server{n} struct {{
	Name string
}}

type Handler{n} interface {{
	Serve() error
}}

func New{n}(name string) *Server{n} {{
	return &Server{n}{{Name: name}}
}}

func (s *Server{n}) Serve() error {{
	fmt.Println("func fake() {{}}")
	return nil
}}
"""
RUST = """//! crate {n}
pub struct Point{n} {{
    pub x: i32,
    pub y: i32,
}}

pub enum Shape{n} {{ Circle, Square }}

pub trait Area{n} {{
    fn area(&self) -> f64;
}}

impl Point{n} {{
    pub fn new(x: i32, y: i32) -> Self {{ Self {{ x, y }} }}
}}

pub fn distance{n}(a: &Point{n}, b: &Point{n}) -> f64 {{
    let s = "fn fake() {{}}";
    ((a.x - b.x) as f64).hypot((a.y - b.y) as f64)
}}
"""
JAVA = """package app;

public class Account{n} {{
    private long balance;

    public Account{n}(long initial) {{ this.balance = initial; }}

    public long balance() {{ return balance; }}

    public void deposit(long amount) {{
        String s = "public void fake() {{}}";
        balance += amount;
    }}
}}
"""
MD = "# Notes {n}\n\nSome text.\n"
TEMPLATES: tuple[tuple[str, str, int], ...] = (
    ("py", PY, 40),
    ("ts", TS, 15),
    ("js", JS, 10),
    ("go", GO, 10),
    ("rs", RUST, 10),
    ("java", JAVA, 10),
    ("md", MD, 5),
)


def generate_tree(root: Path, count: int = 10_000) -> None:
    """Write `count` small files in a mix of languages, 100 files per directory."""
    rng = random.Random(0)
    kinds = [(ext, text) for ext, text, weight in TEMPLATES for _ in range(weight)]
    for n in range(count):
        ext, text = rng.choice(kinds)
        folder = root / f"pkg{n // 1000}" / f"mod{(n // 100) % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file{n}.{ext}").write_text(text.format(n=n))
    (root / ".gitignore").write_text("*.log\nnode_modules/\n")


async def _report(percent: float, message: str, *, stage: str, sub_progress: float) -> None:
    return None


async def _checkpoint() -> None:
    return None


def _ignore(message: str) -> None:
    return None


def _map(root: Path, exclude: Sequence[str]) -> CodeMap:
    results: list[CodeMap] = []

    async def run() -> None:  # returns nothing: asyncio may repr() the main task's result
        results.append(
            await map_codebase(
                root, roots=[root], exclude=exclude, report=_report, checkpoint=_checkpoint, diagnostic=_ignore
            )
        )

    anyio.run(run)
    return results[0]


def _timed(action: Callable[[], CodeMap]) -> tuple[CodeMap, float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    result = action()
    return result, time.perf_counter() - start, time.process_time() - cpu


def measure(label: str, root: Path, exclude: Sequence[str] = ()) -> None:
    """Map `root` twice (timed, then under tracemalloc) and print the figures."""
    code_map, seconds, cpu = _timed(lambda: _map(root, exclude))
    tracemalloc.start()
    _map(root, exclude)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    lines = sum(summary.lines for summary in code_map.languages.values())
    symbols = sum(summary.symbols for summary in code_map.languages.values())
    rendered = len(render_markdown(code_map))
    maxrss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"== {label}: {root}")
    print(f"   files mapped: {code_map.total_files:,}  lines: {lines:,}  symbols: {symbols:,}")
    print(f"   skipped: {code_map.skipped}  diagnostics: {len(code_map.diagnostics)}")
    rate = code_map.total_files / seconds
    print(f"   wall: {seconds:.2f} s  ->  {rate:,.0f} files/s   (process CPU time: {cpu:.2f} s)")
    print(f"   tracemalloc peak: {peak / 2**20:.1f} MiB  ru_maxrss (process): {maxrss_mib:.1f} MiB")
    print(f"   markdown (default cap): {rendered:,} chars")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="codemap-bench-") as tmp:
        root = Path(tmp)
        generate_tree(root)
        measure("generated mixed tree (10,000 files)", root)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    measure("installed standard library (site-packages excluded)", stdlib, exclude=["site-packages/"])


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
