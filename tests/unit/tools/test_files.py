"""The file tools on a real directory tree, against paths, links and files meant to get out of the sandbox."""

from __future__ import annotations

import os
import resource
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from agentkit.tool import as_tool
from agentkit.tools import files, list_dir, read_file, search_files, write_file
from tests.unit.tools.support import ok, refused


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the sandbox, with a secret in it."""
    place = tmp_path / "outside"
    place.mkdir()
    (place / "secret.txt").write_text("the secret password\n")
    return place


@pytest.fixture
def root(tmp_path: Path, outside: Path) -> Path:
    """The sandbox: some files, and links that lead out of it."""
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "guide.md").write_text("# Guide\nThe password is not here.\nline three\n")
    (root / "notes.txt").write_text("first note\nsecond note\n")
    (root / "link-out").symlink_to(outside / "secret.txt")  # absolute, to a file outside
    (root / "dir-out").symlink_to(outside)  # to a directory outside
    (root / "docs" / "up-out").symlink_to("../../outside/secret.txt")  # relative, climbing out
    (root / "hop").symlink_to("docs/up-out")  # inside, to a link that leads out
    (root / "guide-link").symlink_to("docs/guide.md")  # inside, to a file inside
    (root / "docs-link").symlink_to("docs")  # inside, to a directory inside
    return root


@pytest.fixture
def tools(root: Path) -> dict[str, Any]:
    return {as_tool(t).name: t for t in files(root, write=True, max_read_bytes=64, max_write_bytes=1000)}


# --- what they are for ----------------------------------------------------------------


def test_files_offers_writing_only_when_asked(root: Path) -> None:
    assert [as_tool(t).name for t in files(root)] == ["read_file", "list_dir", "search_files"]
    assert [as_tool(t).name for t in files(root, write=True)][-1] == "write_file"
    assert as_tool(write_file(root)).options.idempotent is False


def test_read_a_file_and_page_through_a_long_one(tools: dict[str, Any], root: Path) -> None:
    assert ok(tools["read_file"], path="notes.txt")["text"] == "first note\nsecond note\n"
    (root / "long.txt").write_text("".join(f"{n:03}\n" for n in range(40)))  # 160 bytes, read 64 at a time
    first = ok(tools["read_file"], path="long.txt")
    assert (first["size"], first["truncated"], first["next_offset"]) == (160, True, 64)
    rest = ok(tools["read_file"], path="long.txt", offset=128)
    assert (rest["text"], rest["truncated"]) == ("".join(f"{n:03}\n" for n in range(32, 40)), False)


def test_links_that_stay_inside_are_followed(tools: dict[str, Any]) -> None:
    assert ok(tools["read_file"], path="guide-link")["text"].startswith("# Guide")
    assert ok(tools["read_file"], path="docs-link/guide.md")["text"].startswith("# Guide")
    assert [e["name"] for e in ok(tools["list_dir"], path="docs-link")["entries"]] == ["guide.md", "up-out"]


def test_an_absolute_path_inside_the_root_is_allowed(tools: dict[str, Any], root: Path) -> None:
    assert ok(tools["read_file"], path=str(root.resolve() / "notes.txt"))["text"].startswith("first note")


def test_list_shows_links_without_following_them(tools: dict[str, Any]) -> None:
    entries = {e["name"]: e for e in ok(tools["list_dir"])["entries"]}
    assert entries["notes.txt"] == {"name": "notes.txt", "type": "file", "size": 23}
    assert entries["docs"]["type"] == "directory"
    assert entries["link-out"] == {"name": "link-out", "type": "symbolic link", "size": None}


def test_list_is_capped(root: Path) -> None:
    listing = ok(list_dir(root, max_entries=2))
    assert [e["name"] for e in listing["entries"]] == ["dir-out", "docs"]
    assert listing["truncated"] is True


def test_write_makes_parents_and_replaces_keeping_the_mode(tools: dict[str, Any], root: Path) -> None:
    assert ok(tools["write_file"], path="new/deeper/file.txt", content="hi") == "wrote 2 bytes to new/deeper/file.txt"
    assert (root / "new" / "deeper" / "file.txt").read_text() == "hi"
    (root / "notes.txt").chmod(0o640)
    assert "(replaced the old file)" in ok(tools["write_file"], path="notes.txt", content="rewritten")
    assert (root / "notes.txt").read_text() == "rewritten"
    assert stat.S_IMODE((root / "notes.txt").stat().st_mode) == 0o640
    assert sorted(p.name for p in root.iterdir() if "agentkit-tmp" in p.name) == []


def test_search_finds_lines_ignoring_case(tools: dict[str, Any]) -> None:
    found = ok(tools["search_files"], text="NOTE")
    assert found["matches"] == [
        {"path": "notes.txt", "line": 1, "text": "first note"},
        {"path": "notes.txt", "line": 2, "text": "second note"},
    ]
    in_docs = ok(tools["search_files"], text="line", path="docs", name="*.md")
    assert in_docs["matches"] == [{"path": "docs/guide.md", "line": 3, "text": "line three"}]


def test_search_results_are_capped(root: Path) -> None:
    (root / "many.txt").write_text("x\n" * 50)
    found = ok(search_files(root, max_results=5), text="x")
    assert (len(found["matches"]), found["truncated"]) == (5, True)


# --- hostile paths -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../outside/secret.txt", "docs/../../outside/secret.txt", "docs/..", ".."])
def test_dot_dot_is_refused(tools: dict[str, Any], path: str) -> None:
    for name in ("read_file", "list_dir"):
        assert f"refused: {path} contains '..'" in refused(tools[name], path=path)
    assert "contains '..'" in refused(tools["write_file"], path=path + "/x", content="x")
    assert "contains '..'" in refused(tools["search_files"], text="secret", path=path)


@pytest.mark.parametrize("tool", ["read_file", "list_dir"])
def test_absolute_paths_outside_are_refused(tools: dict[str, Any], outside: Path, tool: str) -> None:
    for path in ("/etc/passwd", "/", str(outside / "secret.txt"), "//etc/passwd"):
        assert "is an absolute path outside the sandbox" in refused(tools[tool], path=path)


def test_an_absolute_write_outside_is_refused(tools: dict[str, Any], outside: Path) -> None:
    target = outside / "planted.txt"
    assert "is an absolute path outside the sandbox" in refused(tools["write_file"], path=str(target), content="x")
    assert not target.exists()


@pytest.mark.parametrize(
    ("path", "link"),
    [
        ("link-out", "link-out"),  # a link to a file outside
        ("dir-out/secret.txt", "dir-out"),  # through a link to a directory outside
        ("docs/up-out", "docs/up-out"),  # a relative link climbing out
        ("hop", "hop"),  # a link inside, to a link that leads out
        ("docs-link/up-out", "docs-link/up-out"),  # an inside link, then one that leads out
    ],
)
def test_links_leading_out_are_refused(tools: dict[str, Any], outside: Path, path: str, link: str) -> None:
    text = refused(tools["read_file"], path=path)
    assert f"refused: {link} is a symbolic link that leads outside the sandbox root" in text
    assert "outside" not in text.replace("leads outside", "")  # where it leads is not told


def test_listing_or_writing_through_a_link_leading_out_is_refused(tools: dict[str, Any], outside: Path) -> None:
    assert "dir-out is a symbolic link that leads outside" in refused(tools["list_dir"], path="dir-out")
    text = refused(tools["write_file"], path="dir-out/planted.txt", content="x")
    assert "dir-out is a symbolic link that leads outside" in text
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_writing_over_a_link_is_refused_and_its_target_kept(tools: dict[str, Any], outside: Path) -> None:
    text = refused(tools["write_file"], path="link-out", content="overwritten")
    assert "link-out is a symbolic link; write_file only creates or replaces regular files" in text
    assert (outside / "secret.txt").read_text() == "the secret password\n"


def test_a_link_loop_is_refused(tools: dict[str, Any], root: Path) -> None:
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    assert "goes through more than 40 symbolic links" in refused(tools["read_file"], path="a")


def test_a_nul_in_a_path_is_refused(tools: dict[str, Any]) -> None:
    assert "contains a NUL character" in refused(tools["read_file"], path="notes.txt\x00.png")


# --- hostile files --------------------------------------------------------------------------


def test_a_fifo_is_refused_without_hanging(tools: dict[str, Any], root: Path) -> None:
    os.mkfifo(root / "pipe")
    assert "refused: pipe is a FIFO; only regular files are read" in refused(tools["read_file"], path="pipe")
    text = refused(tools["write_file"], path="pipe", content="x")
    assert "pipe is a FIFO; write_file only creates or replaces regular files" in text


def test_a_socket_is_refused(tools: dict[str, Any], root: Path) -> None:
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(root / "sock"))
        assert "sock is a socket; only regular files are read" in refused(tools["read_file"], path="sock")


def test_a_device_is_refused(tools: dict[str, Any], root: Path) -> None:
    # A device node inside the root (making one needs root, which the test runs as in CI).
    try:
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    assert "null is a character device; only regular files are read" in refused(tools["read_file"], path="null")


def test_a_link_to_a_device_is_refused(tools: dict[str, Any], root: Path) -> None:
    (root / "zero").symlink_to("/dev/zero")
    assert "zero is a symbolic link that leads outside" in refused(tools["read_file"], path="zero")


def test_binary_files_are_refused(tools: dict[str, Any], root: Path) -> None:
    (root / "blob.bin").write_bytes(b"\x7fELF\x00\x01\x02")
    assert "blob.bin is a binary file" in refused(tools["read_file"], path="blob.bin")


def test_a_directory_is_not_read_as_a_file(tools: dict[str, Any]) -> None:
    assert "docs is a directory, not a file" in refused(tools["read_file"], path="docs")


def test_an_oversized_write_is_refused_and_nothing_written(tools: dict[str, Any], root: Path) -> None:
    text = refused(tools["write_file"], path="notes.txt", content="x" * 1001)
    assert "the content is 1001 bytes, over the 1000-byte cap of write_file" in text
    assert (root / "notes.txt").read_text() == "first note\nsecond note\n"


@pytest.mark.parametrize("path", ["docs", ".", "docs/"])
def test_writing_over_a_directory_is_refused(tools: dict[str, Any], root: Path, path: str) -> None:
    text = refused(tools["write_file"], path=path, content="x")
    assert "is a directory" in text or "is the sandbox root itself" in text
    assert (root / "docs" / "guide.md").is_file()


def test_writing_under_a_file_is_refused(tools: dict[str, Any]) -> None:
    assert "notes.txt is a file, not a directory" in refused(tools["write_file"], path="notes.txt/x", content="x")


def test_a_failed_write_keeps_the_old_content_and_leaves_no_temporary_file(root: Path) -> None:
    tool = write_file(root, max_bytes=100_000)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))  # writes past 4 KiB fail (EFBIG)
    try:
        text = refused(tool, path="notes.txt", content="y" * 10_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    assert "File too large" in text
    assert (root / "notes.txt").read_text() == "first note\nsecond note\n"
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []


def test_search_skips_links_binary_and_oversized_files(root: Path) -> None:
    (root / "blob.bin").write_bytes(b"secret\x00binary")
    (root / "huge.txt").write_text("secret " * 200)
    found = ok(search_files(root, max_file_bytes=1000), text="secret")
    assert found["matches"] == []  # the secret is only outside, behind links, or in skipped files
    assert found["skipped"] == {"symbolic links": 6, "binary files": 1, "files over the size cap": 1}


def test_search_skips_special_files(root: Path) -> None:
    os.mkfifo(root / "docs" / "pipe")
    found = ok(search_files(root), text="guide")
    assert found["matches"] == [{"path": "docs/guide.md", "line": 1, "text": "# Guide"}]
    assert found["skipped"]["FIFOs"] == 1


def test_a_missing_root_is_refused_when_the_tool_is_made(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        read_file(tmp_path / "nowhere")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is not a directory"):
        files(tmp_path / "file")
