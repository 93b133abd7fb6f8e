"""Reading a compose file (and its .env) and writing the fixed copy next to it.

The YAML library is ruamel.yaml in round-trip mode: it builds plain mappings, lists and scalars
(no Python object is ever constructed from a tag), keeps comments, key order, quotes and anchors
for --fix, and resolves anchors, aliases and `<<` merge keys as Compose does. Aliases are shared,
not copied, and the plain copy the checks read keeps that sharing, so an alias bomb costs what
its text costs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tamer.compose.model import MAX_INTERPOLATED, interpolate
from tamer.errors import TamerError, UsageError
from tamer.regular_files import NotARegularFile as NotARegularFile
from tamer.regular_files import read_regular as read_regular

DEFAULT_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
# what `docker compose` merges into the default file when run without -f
OVERRIDE_NAMES = (
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
)
MAX_BYTES = 8 * 1024 * 1024  # a compose file this big is not one; refuse before parsing it
FIX_MARKER = "# Written by `tamer compose check --fix`"


@dataclass(frozen=True)
class ComposeSource:
    path: Path
    text: str
    document: Any  # the round-trip document (ruamel CommentedMap), for --fix
    data: Any  # plain, interpolated: what the checks read
    env: Mapping[str, str]
    project_dir: str


def find_compose_file(given: str | None, cwd: str | None = None) -> Path:
    """The file to check: FILE, or the first of DEFAULT_NAMES in FILE (a folder) or the current folder."""
    folder = Path(cwd or os.getcwd())
    if given is not None:
        if not given.strip() or "\0" in given:
            raise UsageError(
                "the compose file name is empty; give a path to a compose file (nothing was changed)"
            )
        path = Path(given)
        if not path.is_dir():
            if not path.exists():
                raise UsageError(
                    f"compose file {given} does not exist; give the path of a compose file, or run this in its "
                    "folder (nothing was changed)"
                )
            if not path.is_file():
                raise UsageError(
                    f"{given} is not a regular file; expected a compose file (nothing was changed)"
                )
            return path
        folder = path
    for name in DEFAULT_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise UsageError(
        f"no compose file in {folder}: looked for {', '.join(DEFAULT_NAMES)}; give its path "
        "(`tamer compose check FILE`); nothing was changed"
    )


def yaml_loader() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.allow_duplicate_keys = False
    return yaml


def read_compose(path: Path) -> ComposeSource:
    """Read and parse `path`; UsageError (exit 2) for a file that is unreadable, not YAML or too big."""
    try:
        raw = read_regular(path, MAX_BYTES)
    except NotARegularFile:
        raise UsageError(
            f"{path} is not a regular file; expected a compose file (nothing was changed)"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc} (nothing was changed)") from None
    if raw is None:
        raise UsageError(
            f"{path} is over {MAX_BYTES} bytes; a compose file is far smaller: is it the right file? "
            "(nothing was changed)"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path} is not UTF-8 text (byte {exc.start}); expected a YAML compose file"
        ) from None
    document = parse_yaml(text.replace("\r\n", "\n"), str(path))  # render() writes CRLF back
    project_dir = os.path.dirname(os.path.abspath(path))
    env = compose_environment(project_dir)
    try:
        data = plain(document, env, str(path))
    except RecursionError:
        raise UsageError(f"{path} nests too deeply to be a compose file (nothing was changed)") from None
    return ComposeSource(path, text, document, data, env, project_dir)


def parse_yaml(text: str, source: str) -> Any:
    from ruamel.yaml.error import YAMLError, YAMLFutureWarning

    try:
        return yaml_loader().load(text)
    except (YAMLError, YAMLFutureWarning) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(
            f"{source} is not valid YAML{where}: {problem}; expected a compose file (nothing was changed)"
        ) from None
    except RecursionError:
        raise UsageError(f"{source} nests too deeply to be a compose file (nothing was changed)") from None


def compose_environment(project_dir: str) -> dict[str, str]:
    """The variables Compose interpolates with: the project's .env, overridden by the environment.

    Values are read as Compose's dotenv reads them: 'single' quotes literal, "double" quotes with
    \\n, \\" and \\\\ escapes, unquoted values up to an inline ` #` comment; double-quoted and
    unquoted values expand ${VAR} from the environment, then from the lines above.
    """
    env: dict[str, str] = {}
    grown = 0
    where = os.path.join(project_dir, ".env")
    with contextlib.suppress(OSError, UnicodeDecodeError):
        # a FIFO or a link to /dev/zero named .env must not hang the check: regular files only, bounded
        raw = read_regular(Path(where), MAX_BYTES) or b""
        for line in raw.decode("utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.removeprefix("export ").partition("=")
            try:
                env[key.strip()] = dotenv_value(value, {**env, **os.environ}, where)
                grown += len(env[key.strip()])
                if grown > MAX_INTERPOLATED:  # each value is bounded; so are all of them together
                    raise UsageError(
                        f"{where}: its values grow past {MAX_INTERPOLATED} characters once their variables "
                        "are put in (lines that each use the one before twice?); expected a compose "
                        "project's variables (nothing was changed)"
                    )
            except RecursionError:  # ${A:-${A:-...}} thousands deep: bad input, not an internal error
                raise UsageError(
                    f"{where}: the value of {key.strip()[:60]!r} nests ${{...}} too deeply to be a "
                    "variable; fix that line (nothing was changed)"
                ) from None
    env.update(os.environ)
    return env


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$$"}


def dotenv_value(raw: str, known: Mapping[str, str], where: str) -> str:
    """One .env value as Compose reads it (see compose_environment).

    >>> dotenv_value(" shop # the name", {}, ".env"), dotenv_value("'a # $X'", {"X": "1"}, ".env")
    ('shop', 'a # $X')
    """
    raw = raw.strip()
    if raw[:1] == "'":
        end = raw.find("'", 1)
        return raw[1:end] if end > 0 else raw[1:]
    if raw[:1] == '"':
        out: list[str] = []
        i = 1
        while i < len(raw) and raw[i] != '"':
            if raw[i] == "\\" and i + 1 < len(raw):
                out.append(_ESCAPES.get(raw[i + 1], "\\" + raw[i + 1]))
                i += 2
                continue
            out.append(raw[i])
            i += 1
        return interpolate("".join(out), known, where)
    for mark in (" #", "\t#"):
        raw = raw.split(mark, 1)[0]
    return interpolate(raw.rstrip(), known, where)


def plain(node: Any, env: Mapping[str, str], source: str) -> Any:
    """The document as plain dicts, lists and scalars, strings interpolated; shared nodes stay shared."""
    memo: dict[int, Any] = {}
    budget = [MAX_INTERPOLATED]  # for the whole document: each string is bounded, so are all of them

    def text_of(raw: str) -> str:
        result = interpolate(raw, env, source, limit=max(budget[0], 0))
        budget[0] -= max(len(result) - len(raw), 0)  # what variables added (the text is bounded already)
        return result

    def conv(value: Any) -> Any:
        key = id(value)
        if key in memo:
            return memo[key]
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            memo[key] = out
            for k, v in value.items():
                # a key is a scalar in any compose file; a list or mapping key is kept by its kind only
                # (str() of one built from aliases could be exponentially long)
                out[
                    str(k)
                    if isinstance(k, str | int | float | bool) or k is None
                    else f"<{type(k).__name__}>"
                ] = conv(v)
            return out
        if isinstance(value, list):
            seq: list[Any] = []
            memo[key] = seq
            seq.extend(conv(v) for v in value)
            return seq
        if isinstance(value, str):
            return text_of(str(value))
        if value is None or isinstance(value, bool | int | float):
            return value
        inner = getattr(value, "value", None)  # a tagged scalar (!reset "x") keeps its text
        return text_of(str(inner if inner is not None else value))

    return conv(node)


def fixed_output_path(path: Path) -> Path:
    """compose.yaml -> compose.tamer.yaml (next to it, never the file itself)."""
    suffix = path.suffix if path.suffix in (".yaml", ".yml") else ".yaml"
    stem = path.name[: -len(path.suffix)] if path.suffix in (".yaml", ".yml") else path.name
    return path.with_name(f"{stem}.tamer{suffix}")


def check_output(original: Path, output: Path) -> None:
    """Refuse an output that is the original (by any name), a link, or a file tamer did not write."""
    if os.path.lexists(output):
        if output.is_symlink():
            raise UsageError(
                f"{output} is a symbolic link; tamer writes only a plain file there (nothing was changed)"
            )
        with contextlib.suppress(OSError):
            if output.samefile(original):
                raise UsageError(
                    f"{output} is the compose file itself; --fix never overwrites it (nothing was changed)"
                )
        try:
            head = (read_regular(output, MAX_BYTES) or b"")[: len(FIX_MARKER.encode())].decode(
                "utf-8", errors="replace"
            )
        except NotARegularFile:
            raise UsageError(
                f"{output} exists and is not a regular file; tamer writes only a plain file there: move it "
                "away or give another --output (nothing was changed)"
            ) from None
        except OSError as exc:
            raise UsageError(f"cannot read {output}: {exc.strerror or exc} (nothing was changed)") from None
        if not head.startswith(FIX_MARKER):
            raise UsageError(
                f"{output} exists and was not written by tamer; move it away or give another --output (nothing was changed)"
            )
    elif os.path.abspath(output) == os.path.abspath(original):
        raise UsageError(
            f"{output} is the compose file itself; --fix never overwrites it (nothing was changed)"
        )


def _remove_stale_temporaries(output: Path) -> None:
    """The temporary files of earlier --fix runs killed before their rename (their process is gone):
    they would otherwise stay in the user's project folder for ever."""
    prefix = f".{output.name}.tamer-"
    with contextlib.suppress(OSError):
        for name in os.listdir(output.parent):
            pid = (
                name[len(prefix) : -len(".tmp")] if name.startswith(prefix) and name.endswith(".tmp") else ""
            )
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                os.kill(int(pid), 0)
                continue  # still running: its file
            except ProcessLookupError:
                pass
            except OSError:
                continue  # alive, someone else's
            with contextlib.suppress(OSError):
                os.unlink(output.parent / name)


def write_fixed(original: Path, output: Path, text: str) -> None:
    """Write `text` to `output` atomically (a temporary file renamed over), with the original's mode."""
    check_output(original, output)
    mode = original.stat().st_mode & 0o777
    _remove_stale_temporaries(output)
    tmp = output.with_name(f".{output.name}.tamer-{os.getpid()}.tmp")
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError as exc:
        raise TamerError(
            f"cannot write the fixed copy {output}: {exc.strerror or exc}; it goes next to {original.name} "
            "(relative paths and the project name follow the folder), so that folder must be writable by "
            "you: fix its permissions, or copy the folder somewhere writable and check it there (nothing "
            "was written)"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, output)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise TamerError(
                f"cannot write the fixed copy {output}: {exc.strerror or exc}; nothing was written "
                "(the original is unchanged); free space or fix the folder, then run --fix again"
            ) from None
        raise
