"""Undo/redo history for small editable states (a landmark set's arrays are a few KB)."""

from __future__ import annotations

import copy
from typing import Generic, TypeVar

State = TypeVar("State")


class EditHistory(Generic[State]):
    """Two stacks of full snapshots; an edit clears the redo stack.

    Snapshots are deep copies, so callers may keep mutating their live state in place.
    """

    def __init__(self, limit: int = 200):
        self._undo: list[State] = []
        self._redo: list[State] = []
        self._limit = limit

    def record(self, state_before: State) -> None:
        """Call just before an edit with the state it is about to change."""
        self._undo.append(copy.deepcopy(state_before))
        if len(self._undo) > self._limit:
            self._undo.pop(0)
        self._redo.clear()

    def undo(self, current: State) -> State:
        """The state before the last edit; ``current`` goes to the redo stack."""
        if not self._undo:
            raise IndexError("nothing to undo")
        self._redo.append(copy.deepcopy(current))
        return self._undo.pop()

    def redo(self, current: State) -> State:
        """The state the last undo left; ``current`` goes back to the undo stack."""
        if not self._redo:
            raise IndexError("nothing to redo")
        self._undo.append(copy.deepcopy(current))
        return self._redo.pop()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
