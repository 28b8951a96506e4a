"""Symbol extraction of `map-codebase`: Python via ast, the brace languages via regexes."""

from __future__ import annotations

import textwrap
import time
from typing import Any

import pytest

from vibe_jobs.tools.codemap.model import Symbol
from vibe_jobs.tools.codemap.symbols import AST_MAX_BYTES, count_lines, detect_language, extract_symbols


def _symbols(language: str, source: str) -> list[Symbol]:
    extraction = extract_symbols(language, textwrap.dedent(source).encode())
    assert extraction.error is None
    return extraction.symbols


def _outline(symbols: list[Symbol]) -> list[tuple[str, str, int]]:
    return [(s.kind, s.name, s.line) for s in symbols]


def _children(symbol: Symbol) -> list[str]:
    return [child.name for child in symbol.children or ()]


def test_python_classes_methods_functions_and_signatures() -> None:
    symbols = _symbols(
        "Python",
        """
        import os

        class Base:
            pass

        class Service(Base, metaclass=Meta):
            def __init__(self, name: str, retries: int = 3) -> None:
                self.name = name

            async def run(self, *args: str, **kwargs: int) -> list[str]:
                def inner():
                    pass
                return []

        def f(a: int, b=2) -> str:
            return ""

        async def g(x, /, y, *, z=None):
            pass

        if True:
            def hidden(): pass
        """,
    )
    assert _outline(symbols) == [
        ("class", "Base", 4),
        ("class", "Service", 7),
        ("function", "f", 16),
        ("function", "g", 19),
    ]
    service = symbols[1]
    assert service.signature == "class Service(Base, metaclass=Meta)"
    assert _children(service) == ["__init__", "run"]
    assert service.children is not None
    assert service.children[0].signature == "def __init__(self, name: str, retries: int = 3) -> None"
    assert service.children[1].signature == "async def run(self, *args: str, **kwargs: int) -> list[str]"
    assert service.children[1].kind == "method"
    assert symbols[2].signature == "def f(a: int, b=2) -> str"
    assert symbols[3].signature == "async def g(x, /, y, *, z=None)"
    assert symbols[0].children is None


def test_python_syntax_error_is_reported_not_raised() -> None:
    extraction = extract_symbols("Python", b"def ok():\n    pass\n\ndef broken(:\n")
    assert extraction.symbols == []
    assert extraction.error is not None
    assert "syntax error at line 4" in extraction.error


def test_typescript_declarations_ignoring_comments_and_strings() -> None:
    symbols = _symbols(
        "TypeScript",
        """
        // export function commented() {}
        const s = "export class InString {}";
        /* export interface Hidden {}
        */
        export interface Props extends Base {
          id: number;
        }
        export type Id<T> = string | T;
        export default class Widget<T> extends Base {
          private count = 0;
          constructor(private readonly props: Props) { super(); }
          static create(opts: { a: string }): Widget<any> { if (x) { foo(); } return new Widget(opts); }
          async load(): Promise<void> {
            for (const a of b) {}
          }
        }
        export const enum Color { Red, Green }
        export const handler = async (req: Request, res: Response): Promise<void> => {
          res.end();
        };
        export const plain = 42;
        export async function* gen(a: number = 1): AsyncGenerator<number> {}
        const tpl = `
        export function inTemplate() {}
        `;
        """,
    )
    assert _outline(symbols) == [
        ("interface", "Props", 6),
        ("type", "Id", 9),
        ("class", "Widget", 10),
        ("enum", "Color", 18),
        ("function", "handler", 19),
        ("function", "gen", 23),
    ]
    assert _children(symbols[2]) == ["constructor", "create", "load"]
    assert symbols[4].signature == "export const handler = async (req: Request, res: Response): Promise<void> =>"
    assert symbols[5].signature == "export async function* gen(a: number = 1): AsyncGenerator<number>"


def test_javascript_functions_arrows_and_classes() -> None:
    symbols = _symbols(
        "JavaScript",
        """
        export function add(a, b) { return a + b; }
        export const mul = (a, b) => a * b;
        const single = x => x;
        let notAFunction = compute(1);
        export class Counter {
          increment() { this.n += 1; }
        }
        """,
    )
    assert _outline(symbols) == [
        ("function", "add", 2),
        ("function", "mul", 3),
        ("function", "single", 4),
        ("class", "Counter", 6),
    ]
    assert _children(symbols[3]) == ["increment"]


def test_go_functions_methods_and_types() -> None:
    symbols = _symbols(
        "Go",
        """
        package main

        // func Commented() {}
        type (
        \tPoint struct {
        \t\tX, Y int
        \t}
        \tID = string
        )

        type Server[T any] struct{ name T }

        type Handler interface {
        \tServe() error
        }

        func (s *Server[T]) Serve(port int) (int, error) {
        \tfmt.Println("func fake() {}")
        \treturn 0, nil
        }

        func main() {
        \tx := `
        func inRaw() {}
        `
        }
        """,
    )
    assert _outline(symbols) == [
        ("struct", "Point", 6),
        ("type", "ID", 9),
        ("struct", "Server", 12),
        ("interface", "Handler", 14),
        ("method", "Server.Serve", 18),
        ("function", "main", 23),
    ]
    assert symbols[4].signature == "func (s *Server[T]) Serve(port int) (int, error)"


def test_rust_items_and_impl_blocks() -> None:
    symbols = _symbols(
        "Rust",
        """
        /// pub fn documented() {}
        pub struct Point { pub x: i32 }
        pub(crate) enum Shape { Circle(f64), Square }
        pub trait Area {
            fn area(&self) -> f64;
        }
        impl<T: Into<String>> Area for Wrapper<T> where T: Clone {
            fn area(&self) -> f64 { 0.0 }
        }
        impl Point {
            pub fn new(x: i32) -> Self { Self { x } }
            fn helper<'a>(&self, s: &'a str) -> &'a str { let c = '{'; s }
        }
        pub async fn fetch(url: &str) -> Result<String, Error> { todo!() }
        fn main() { let s = r#"pub fn in_raw() {}"#; }
        """,
    )
    assert _outline(symbols) == [
        ("struct", "Point", 3),
        ("enum", "Shape", 4),
        ("trait", "Area", 5),
        ("impl", "Area for Wrapper<T>", 8),
        ("impl", "Point", 11),
        ("function", "fetch", 15),
        ("function", "main", 16),
    ]
    assert _children(symbols[2]) == ["area"]
    assert _children(symbols[4]) == ["new", "helper"]
    assert symbols[5].signature == "pub async fn fetch(url: &str) -> Result<String, Error>"


def test_java_public_types_and_public_methods() -> None:
    symbols = _symbols(
        "Java",
        """
        package app;
        /* public class Commented {} */
        @Deprecated
        public final class Account extends Base {
            public static final String S = "public void fake() {}";
            public Account(long initial) { this.balance = initial; }
            @Override
            public int compareTo(Account other) { return 0; }
            public static <T> List<T> wrap(T item) { return List.of(item); }
            private void hidden() {}
            void packagePrivate() {}
            public static class Inner {
                public void innerMethod() {}
            }
        }
        class NotPublic { public void x() {} }
        """,
    )
    assert _outline(symbols) == [("class", "Account", 5)]
    assert _children(symbols[0]) == ["Account", "compareTo", "wrap"]
    assert symbols[0].children is not None
    assert symbols[0].children[1].line == 9


def test_java_interface_record_and_enum() -> None:
    interface = _symbols("Java", "public interface Repo<T> {\n    T find(long id);\n    int COUNT = 1;\n}\n")
    record = _symbols("Java", "public record Point(int x, int y) {\n    public double norm() { return 0; }\n}\n")
    enum = _symbols("Java", 'public enum Color {\n    RED("r");\n    public String code() { return ""; }\n}\n')
    assert [(s.kind, s.name, _children(s)) for s in interface + record + enum] == [
        ("interface", "Repo", ["find"]),
        ("record", "Point", ["norm"]),
        ("enum", "Color", ["code"]),
    ]


def test_non_utf8_source_is_an_error_and_unknown_languages_have_no_symbols() -> None:
    assert extract_symbols("JavaScript", b"function f() {}\n\xff\xfe\n").error == "not valid UTF-8 (byte 16)"
    assert extract_symbols("Markdown", b"# function f() {}\n") == extract_symbols("other", b"")


def test_detect_language_and_count_lines() -> None:
    names = ["a.py", "b.TSX", "c.mjs", "d.go", "e.rs", "F.java", "Makefile", "notes.md", "blob.xyz"]
    assert [detect_language(name) for name in names] == [
        "Python",
        "TypeScript",
        "JavaScript",
        "Go",
        "Rust",
        "Java",
        "Makefile",
        "Markdown",
        "other",
    ]
    assert [count_lines(data) for data in (b"", b"a", b"a\n", b"a\nb", b"\n\n")] == [0, 1, 1, 2, 2]


# --- hostile input: every scanner and pattern stays linear -------------------------------------------

BRACE = ["JavaScript", "TypeScript", "Go", "Rust", "Java"]
SIZE = 60_000
EVERY = 1 << 30  # no cap on symbols: these tests time the reading of every declaration
# Inputs that made a backtracking pattern quadratic (or worse): openers that never close, keywords
# followed by long runs, repeated prefixes of a declaration on every line.
ATTACKS: dict[str, str] = {
    "unclosed block comments": "/*a" * (SIZE // 3),
    "unclosed strings": '"a\\' * (SIZE // 3),
    "unclosed chars": "'\\'" * (SIZE // 3),
    "unclosed templates": "`a\\" * (SIZE // 3),
    "unclosed raw strings": 'r#"a' * (SIZE // 4),
    "unclosed text blocks": '"""a' * (SIZE // 4),
    "keyword then a long comment": "export function /*" + "a" * SIZE + "*/",
    "keyword then blanks": "export async function" + " " * SIZE + "(",
    "arrow type then blanks": "const f = (a):" + " " * SIZE + "x",
    "impl then blanks": "impl X" + " " * SIZE + ";",
    "nested impl generics": "impl<" + "> a" * (SIZE // 3),
    "java return type words": "class A {\n    public " + "a " * (SIZE // 2),
    "java type then blanks": "public class A {\n    public a" + " " * SIZE + "b c",
    "annotation lines": "public class A {\n" + "    @A\n" * (SIZE // 7),
    "modifier lines": "class A {\n" + "  static\n" * (SIZE // 9) + "impl A {\n" + "    const\n" * (SIZE // 10),
    "receiver lines": "func (\n" * (SIZE // 7),
    "unclosed classes": "export class A {\n" * (SIZE // 17),
    "unclosed type groups": "type (\n\tA struct\n" * (SIZE // 17),
    "unclosed parens on declarations": "export enum a (\n" * (SIZE // 16),
}


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
def test_hostile_input_is_read_in_linear_time(attack: str) -> None:
    data = ATTACKS[attack].encode()
    for language in BRACE:
        began = time.process_time()  # CPU time: what other processes on the machine take does not count
        extraction = extract_symbols(language, data, max_symbols=EVERY)
        took = time.process_time() - began
        assert took < 0.75, f"{language}: {took:.2f} s for {len(data):,} bytes"
        assert extraction.error is None


def test_the_reported_hostile_file_is_fast() -> None:
    """'/*a' * 40000: 120 KB that took 18 s (holding the GIL) in the old comment stripper."""
    began = time.process_time()
    assert extract_symbols("JavaScript", ("/*a" * 40000).encode()).symbols == []
    assert time.process_time() - began < 0.25


LARGE_PYTHON = {
    "unclosed triple quotes": '"""a' * (AST_MAX_BYTES // 3),
    "comments": "#a\n" * (AST_MAX_BYTES // 2),
    "unclosed heads": "class a (\n" * (AST_MAX_BYTES // 7),
    "def then blanks": "def" + " " * (2 * AST_MAX_BYTES) + "f(",
}


@pytest.mark.parametrize("attack", LARGE_PYTHON, ids=list(LARGE_PYTHON))
def test_large_python_files_are_outlined_in_linear_time(attack: str) -> None:
    data = LARGE_PYTHON[attack].encode()
    assert len(data) > AST_MAX_BYTES
    began = time.process_time()
    assert extract_symbols("Python", data, max_symbols=EVERY).error is None
    assert time.process_time() - began < 1.0


def test_large_python_files_get_the_same_outline_as_small_ones() -> None:
    source = textwrap.dedent(
        '''
        import os

        class Base:
            """class Fake:"""
            pass

        @decorator
        class Service(Base, metaclass=Meta):
            def __init__(self, name: str, retries: int = 3) -> None:
                self.name = "def fake(): pass"

            async def run(self, *args: str, **kwargs: int) -> list[str]:
                def inner():
                    pass
                return []

            class Config:
                def get(self): ...

                class Deeper:
                    def deepest(self): ...

            limit = 3

            def after_nested(self): ...

        def f(a: int, b=2) -> str:
            return ""

        if True:
            def hidden(): pass

        async def g(x, /, y, *, z=None):
            pass
        '''
    ).encode()
    large = source + b"# padding\n" * (AST_MAX_BYTES // 10)
    small, outlined = extract_symbols("Python", source), extract_symbols("Python", large)

    def shape(symbols: list[Symbol] | None) -> list[Any]:
        return [(s.kind, s.name, s.line, s.signature, shape(s.children)) for s in symbols or ()]

    assert shape(outlined.symbols) == shape(small.symbols)
    assert small.symbols[1].children and [c.name for c in small.symbols[1].children][-2:] == ["Config", "after_nested"]


PIECES = ["/*a", "//a\n", '"a\\', "'a", "`a", 'r#"a', '"""a', "'''a", "'\\'", "b'", "{", "(", "<", "a ", "> a", "#a\n"]
KEYWORDS = ["function", "export", "class", "interface", "type", "enum", "const f =", "const f = (a):", "async",
            "static", "func", "func (", "type (", "pub", "fn", "impl", "impl<", "trait", "struct", "public",
            "public static", "@A", "def", "class A(", "async def", "public class A {", "export class A {"]  # fmt: skip


def _matrix() -> list[tuple[str, str]]:
    n = 40_000
    cases = [(f"piece {p!r}", p * (n // len(p))) for p in PIECES]
    for kw in KEYWORDS:
        cases += [
            (f"{kw!r} then blanks", kw + " " * n + "x"),
            (f"{kw!r} then a comment", kw + " /*" + "a" * n + "*/ x"),
            (f"{kw!r} lines", (kw + "\n") * (n // (len(kw) + 1))),
            (f"{kw!r} indented lines", ("    " + kw + "\n") * (n // (len(kw) + 5))),
            (f"{kw!r} then words", kw + " " + "a " * (n // 2)),
            (f"{kw!r} unclosed braces", (kw + " a {\n") * (n // (len(kw) + 5))),
            (f"{kw!r} unclosed parens", (kw + " a (\n") * (n // (len(kw) + 5))),
        ]
    return cases


@pytest.mark.slow
def test_every_language_against_the_attack_matrix() -> None:
    slow: list[str] = []
    for language in [*BRACE, "Python"]:
        for name, text in _matrix():
            data = text.encode() * (4 if language == "Python" else 1)  # Python: past AST_MAX_BYTES
            began = time.process_time()  # CPU time: what other processes on a shared machine take does not count
            extract_symbols(language, data, max_symbols=EVERY)
            if (took := time.process_time() - began) > 1.0:  # linear inputs take 0.3 s at most; a blowup, seconds
                slow.append(f"{language} {name}: {took:.2f} s")
    assert slow == []


def test_control_characters_in_signatures_and_names_are_shown_escaped() -> None:
    """Declarations were copied verbatim: a hostile file's escape sequences (set the title, clear the screen)
    reached the terminal of whoever read the map."""
    js = 'export function greet(name = "\x1b]0;PWNED\x07\x1b[2J") {}\n'
    (greet,) = _symbols("JavaScript", js)
    assert greet.signature == 'export function greet(name = "\\x1b]0;PWNED\\x07\\x1b[2J")'
    (impl,) = _symbols("Rust", "impl Foo\x1b\x07 {}\n")
    assert (impl.name, impl.signature) == ("Foo\\x1b\\x07", "impl Foo\\x1b\\x07")


def test_a_file_keeps_its_first_symbols_and_says_how_many_it_left_out() -> None:
    """A 2 MiB Go file of `func a()` lines gave 233,000 symbols (160 MB of the server's memory)."""
    for language, line in (("Go", "func a()\n"), ("Python", "def a(): pass\n")):  # Python: past AST_MAX_BYTES
        extraction = extract_symbols(language, (line * 30_000).encode())
        assert extraction.symbols and (extraction.symbols[0].line, extraction.symbols[-1].line) == (1, 2_000)
        assert extraction.error == "kept its first 2,000 symbols; 28,000 more left out", language


def test_classes_and_their_methods_share_the_cap() -> None:
    source = "class A:\n" + "    def m(self): pass\n" * 2_010 + "class B:\n    def n(self): pass\n"
    extraction = extract_symbols("Python", source.encode())
    (a,) = extraction.symbols
    assert len(a.children or ()) == 1_999
    assert extraction.error == "kept its first 2,000 symbols; 12 more left out"


def test_the_time_budget_holds_while_declarations_are_built() -> None:
    """Finding declarations checked the budget; building them (signatures, members) did not."""
    data = "".join(f"function f{i}() {{}}\nclass C{i} {{}}\ninterface I{i} {{}}\n" for i in range(200)).encode()
    assert extract_symbols("JavaScript", data).error is None
    assert extract_symbols("JavaScript", data, budget=0.0).error == "symbols left out: reading them took over 0 s"
