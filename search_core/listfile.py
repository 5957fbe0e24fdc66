"""List files: one entry per line, blank lines and `#` comments skipped.

The blocklist, the blocked concepts and the takedown list all use this format, so all three are
read here, with the same encoding rules and the same errors. An error names the file but never
quotes its content: a blocklist's entries must not leak into a log or a channel.
"""

from __future__ import annotations

from pathlib import Path

from search_core.errors import ImageSearchError


class ListFileError(ImageSearchError):
    """A list file is missing, a folder, unreadable or not UTF-8."""


def read_list(path: Path, *, what: str = "List file", trailing_comments: bool = True,
              error: type[Exception] = ListFileError) -> list[str]:
    """Entries of the file at ``path``; ``what`` names it in errors (e.g. "Moderation list").

    ``trailing_comments`` also cuts `` #...`` after an entry; the takedown list turns it off
    because a source file name may itself contain " #".
    """
    return [entry for _, entry in read_numbered(path, what=what, trailing_comments=trailing_comments,
                                                error=error)]


def read_numbered(path: Path, *, what: str = "List file", trailing_comments: bool = True,
                  error: type[Exception] = ListFileError) -> list[tuple[int, str]]:
    """(line number from 1, entry) pairs, by the rules of `read_list`: for errors that point at a line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist.") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a folder, not a file.") from None
    except PermissionError:
        raise error(f"{what} {path} cannot be read: permission denied.") from None
    except UnicodeDecodeError as exc:
        # exc's own text quotes the offending bytes: say where, not what.
        raise error(f"{what} {path} is not UTF-8 text (bad byte at offset {exc.start}).") from None
    except OSError as exc:
        raise error(f"{what} {path} cannot be read ({exc.strerror}).") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line.startswith("#"):
            continue
        hash_at = line.find(" #") if trailing_comments else -1
        if hash_at >= 0:
            line = line[:hash_at].rstrip()
        if line:
            entries.append((number, line))
    return entries
