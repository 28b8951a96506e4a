"""Which paths the built-in tools serve, and what a refusal gives away (nothing about outside the roots)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vibe_jobs.tools.allowlist import Allowlist
from vibe_jobs.tools.builtin import MapCodebase, RunCommand
from vibe_jobs.tools.printable import printable
from vibe_jobs.tools.roots import PathRefused, resolve_within_roots


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "file.py").write_text("")
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "escape").symlink_to(tmp_path / "outside")
    (tmp_path / "root" / "loop").symlink_to(tmp_path / "root" / "loop")
    (tmp_path / "root" / "inner").symlink_to("sub")
    (tmp_path / "root" / "dangling").symlink_to(tmp_path / "missing")
    return tmp_path


def refusal(path: str, root: Path, **options: bool) -> str:
    with pytest.raises(PathRefused) as caught:
        resolve_within_roots(path, [root], **options)
    return str(caught.value)


def test_inside_paths_resolve(tree: Path) -> None:
    root = tree / "root"
    assert resolve_within_roots("sub", [root], must_be_dir=True) == root / "sub"
    assert resolve_within_roots(str(root / "file.py"), [root]) == root / "file.py"
    assert resolve_within_roots("sub/../file.py", [root]) == root / "file.py"
    assert resolve_within_roots(f"{root}/../root/sub/", [root]) == root / "sub"  # above the root is on the way
    assert resolve_within_roots("inner", [root]) == root / "sub"
    assert resolve_within_roots("inner/../file.py", [root]) == root / "file.py"  # `..` from where the link led


def test_outside_and_missing_read_the_same_and_name_no_root(tree: Path) -> None:
    root = tree / "root"
    messages = {
        refusal(path, root).replace(path, "P")
        for path in (str(tree / "outside"), str(tree / "missing"), "escape", "../outside", "loop", "~nobody-here/x")
    }
    assert messages == {"path 'P' does not exist or is outside the allowed roots"}
    assert refusal("file.py", root, must_be_dir=True) == "path 'file.py' is not a directory"


def tool_refusal(tool: str, root: Path, path: str) -> str | None:
    """What the tool answers for `path` as its directory argument (map-codebase's path, run-command's cwd)."""
    if tool == "map-codebase":
        return MapCodebase([root]).refuse({"path": path})
    allowlist = Allowlist.build("true", None, root=root, environ={"PATH": "/usr/bin:/bin"})
    return RunCommand([root], allowlist).refuse({"command": ["true"], "cwd": path})


@pytest.mark.parametrize("tool", ["map-codebase", "run-command"])
def test_whether_a_path_outside_the_roots_exists_changes_no_answer(tree: Path, tool: str) -> None:
    """`Path.resolve` looked `<outside>` up to resolve `<outside>/../root/sub`: the path was accepted when
    `<outside>` existed and refused when it did not. A way out of the roots is now refused whatever lies there."""
    root = tree / "root"
    answers = {
        (tool_refusal(tool, root, path) or "accepted").replace(path, "P")
        for path in (
            f"{tree}/outside/../root/sub",
            f"{tree}/missing/../root/sub",
            f"{tree}/root/file.py/../../outside/../root/sub",
            f"{tree}/root/sub/../../missing/../root/sub",
            "escape/../root/sub",  # a link out, and back in: its target's existence is outside too
            "dangling/../root/sub",
        )
    }
    assert answers == {f"{tool} refused: path 'P' does not exist or is outside the allowed roots"}
    assert tool_refusal(tool, root, f"{tree}/root/sub/../../root/sub") is None


def test_a_root_reached_through_a_link_is_served_by_that_spelling(tree: Path) -> None:
    """Roots are kept resolved, and the walk refused the first step outside them: a project reached through a
    link (a linked home, macOS's /tmp, the server started in a linked directory and given its $PWD) was refused
    by the spelling its user types (review helper-65 F1). A link that leads into the roots is followed; any other
    place outside still answers alike, there or not."""
    root = tree / "root"
    (tree / "linked").symlink_to(root)
    (tree / "outside" / "back").symlink_to(root / "sub")
    (tree / "hop").symlink_to("linked")  # a link to a link into the root
    assert resolve_within_roots(str(tree / "linked"), [root], must_be_dir=True) == root
    assert resolve_within_roots(str(tree / "linked" / "sub"), [root]) == root / "sub"
    assert resolve_within_roots(str(tree / "hop" / "file.py"), [root]) == root / "file.py"
    assert resolve_within_roots(f"{tree}/linked/../root/sub", [root]) == root / "sub"
    messages = {
        refusal(path, root).replace(path, "P")
        for path in (f"{tree}/outside/back", f"{tree}/missing/back", f"{tree}/linked/../outside", "escape/x")
    }
    assert messages == {"path 'P' does not exist or is outside the allowed roots"}


def test_hostile_paths_get_a_clear_refusal(tree: Path) -> None:
    root = tree / "root"
    assert refusal("a/" * 3000, root) == "path is 6,000 characters long; the limit is 4,096"
    assert refusal("sub\0x", root) == "path contains a NUL character"
    assert refusal("sub\ud800", root) == "path 'sub\\ud800' does not exist or is outside the allowed roots"
    assert refusal("x" * 300, root).endswith("does not exist or is outside the allowed roots")  # a name too long
    long_refusal = refusal("y" * 4000, root)
    assert len(long_refusal) < 300, "a refusal does not echo a long path whole"


def test_printable_escapes_what_utf8_cannot_carry() -> None:
    assert printable(b"\xff_bad.py".decode("utf-8", "surrogateescape")) == "\\xff_bad.py"
    assert printable("lone \ud800 surrogate") == "lone \\ud800 surrogate"
    assert printable("plain é") == "plain é"
    assert printable("new\nline.py") == "new\\nline.py"  # one line, and no escape sequence reaches a terminal
    assert printable("esc\x1b[2J\x07.py") == "esc\\x1b[2J\\x07.py"
