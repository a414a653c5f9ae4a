"""The client's exception tree is drawn in ``mantik._exceptions``: the drawing is the code."""

from __future__ import annotations

import inspect

from mantik import _exceptions
from tests.support.trees import drawn_tree


def test_the_drawn_tree_is_the_class_tree() -> None:
    classes = {
        name: cls
        for name, cls in inspect.getmembers(_exceptions, inspect.isclass)
        if issubclass(cls, _exceptions.MantikError)
    }
    drawn = drawn_tree(_exceptions.__doc__ or "")
    assert set(drawn) == set(classes)
    for name, parent in drawn.items():
        if parent is not None:
            assert classes[name].__bases__ == (classes[parent],), name
