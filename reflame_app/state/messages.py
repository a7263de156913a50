"""User-visible errors and notices: the banner the app shows instead of crashing."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from reflame_core.errors import ReflameError

log = logging.getLogger("reflame_app")


@dataclass
class Message:
    text: str
    level: str  # "error" | "warning" | "info"
    time: float = field(default_factory=time.time)


class MessageLog:
    """Messages for the banner; the newest unacknowledged error stays until dismissed."""

    def __init__(self, limit: int = 50):
        self.limit = limit
        self.items: list[Message] = []

    def error(self, text: str) -> None:
        if not self.items or self.items[-1].text != text:
            log.error(text)
        self._add(Message(text, "error"))

    def warning(self, text: str) -> None:
        """Something the user must look at that did not stop the action (a fit that went on
        without landmarks, a doubtful detection)."""
        if not self.items or self.items[-1].text != text:
            log.warning(text)
        self._add(Message(text, "warning"))

    def info(self, text: str) -> None:
        log.info(text)
        self._add(Message(text, "info"))

    def _add(self, msg: Message) -> None:
        if self.items and self.items[-1].text == msg.text:
            self.items[-1].time = msg.time  # a failure repeating every frame is one message
            return
        self.items.append(msg)
        del self.items[: -self.limit]

    @property
    def errors(self) -> list[Message]:
        return [m for m in self.items if m.level == "error"]

    @property
    def banner(self) -> Message | None:
        """The most recent message, or None once dismissed."""
        return self.items[-1] if self.items else None

    def dismiss(self) -> None:
        self.items.clear()

    @contextmanager
    def guard(self, action: str) -> Iterator[None]:
        """Run a user action; any failure becomes a banner message and the app goes on.

        ReflameError messages are written for users and shown as they are; anything else is
        unexpected, so its type is shown and the traceback logged.
        """
        try:
            yield
        except ReflameError as exc:
            self.error(f"{action} failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - the GUI must survive any failure of an action
            log.debug("%s", traceback.format_exc())
            self.error(f"{action} failed: {type(exc).__name__}: {exc}")
