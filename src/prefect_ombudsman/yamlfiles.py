"""The one way this package reads YAML: size-limited, UTF-8 only, alias expansion bounded.

Every YAML file (project.yaml, pipelines, batch files, drift files, CLI inputs) goes through
`load_yaml_file` / `parse_yaml`, so a hostile file is refused with a message naming it:

- larger than `MAX_YAML_BYTES` (1 MiB, `$OMBUDSMAN_MAX_YAML_BYTES`): refused before it is read;
- not UTF-8: refused with the offset of the first bad byte;
- anchors and aliases: the document may expand to at most `MAX_YAML_NODES` nodes (100,000,
  counting every alias as the whole node it stands for). A "billion laughs" document of a few
  hundred bytes expands to 10^9 nodes and is refused while composing, before anything is built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from prefect_ombudsman.errors import ConfigurationError

MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 100_000


def max_yaml_bytes() -> int:
    try:
        return int(os.environ.get("OMBUDSMAN_MAX_YAML_BYTES", MAX_YAML_BYTES))
    except ValueError:
        return MAX_YAML_BYTES


def _limit_label(limit: int) -> str:
    return f"{limit // (1 << 20)} MiB" if limit % (1 << 20) == 0 else f"{limit:,} bytes"


class _TooBig(Exception):
    pass


class _Refused(yaml.YAMLError):
    """A well-formed document we will not build (alias expansion past the bound)."""


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes of the document with every alias expanded; raises _TooBig past `limit` (or a cycle)."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in visiting:
            raise _TooBig("an alias refers to a node that contains it (a recursive structure)")
        visiting.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > limit:
                    raise _TooBig()
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > limit:
                    raise _TooBig()
        visiting.discard(key)
        sizes[key] = total
        return total

    return size(root)


class BoundedSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses a document whose aliases expand it past `MAX_YAML_NODES` nodes."""

    max_nodes = MAX_YAML_NODES

    def compose_document(self) -> Any:
        node = super().compose_document()
        if node is not None:
            try:
                _expanded_size(node, self.max_nodes)
            except _TooBig as exc:
                detail = str(exc) or (
                    f"its anchors and aliases expand it to more than {self.max_nodes:,} nodes"
                )
                raise _Refused(detail) from None
        return node


def parse_yaml(
    text: str, where: str, *, error: type[ConfigurationError] = ConfigurationError
) -> tuple[Any, yaml.Node | None]:
    """(document, node tree) of YAML text; errors name `where` and the line."""
    limit = max_yaml_bytes()
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > limit:
        raise error(f"{where}: {size:,} bytes, over the {_limit_label(limit)} limit for YAML files")
    loader = BoundedSafeLoader(text)
    try:
        tree = loader.get_single_node()
        doc = loader.construct_document(tree) if tree is not None else None
    except _Refused as exc:
        raise error(f"{where}: refused: {exc} (anchors/aliases are bounded)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{where}{line}: not valid YAML ({problem})") from None
    except RecursionError:
        raise error(f"{where}: refused: nested too deeply") from None
    finally:
        loader.dispose()
    return doc, tree


def read_text_file(
    path: Path, what: str | None = None, *, error: type[ConfigurationError] = ConfigurationError
) -> str:
    """A UTF-8 text file, at most `max_yaml_bytes()`; errors name the file."""
    where = f"{what} {path}" if what else str(path)
    limit = max_yaml_bytes()
    try:
        size = path.stat().st_size
        if size > limit:
            raise error(
                f"{where}: {size:,} bytes, over the {_limit_label(limit)} limit for YAML files"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{where}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise error(f"{where}: over the {_limit_label(limit)} limit for YAML files")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None


def load_yaml_file(
    path: Path, what: str | None = None, *, error: type[ConfigurationError] = ConfigurationError
) -> Any:
    """Read and parse one YAML (or JSON) file with every bound above."""
    text = read_text_file(path, what, error=error)
    return parse_yaml(text, f"{what} {path}" if what else str(path), error=error)[0]
