"""Reading a class tree drawn in a docstring (``Hierarchy::`` then ``├──``/``└──`` lines)."""

from __future__ import annotations

import re

_NODE = re.compile(r"^(?P<indent>[ │]*)[├└]── (?P<name>\w+)")


def drawn_tree(docstring: str) -> dict[str, str | None]:
    """Each class name drawn in ``docstring`` → the name drawn as its parent (None: root)."""
    lines = docstring.split("Hierarchy::", 1)[1].strip("\n").splitlines()
    root = lines[0].split()[0]
    parents: dict[str, str | None] = {root: None}
    stack: list[str] = [root]  # the path to the current line, by depth
    for line in lines[1:]:
        match = _NODE.match(line.strip("\n")[4:]) if line.startswith("    ") else None
        if match is None:
            break
        depth = len(match["indent"]) // 4 + 1
        del stack[depth:]
        parents[match["name"]] = stack[-1]
        stack.append(match["name"])
    return parents
