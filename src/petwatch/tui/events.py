"""The daemon's pushed events as Textual messages, one class per kind carrying that kind's data
(the shapes of petwatch.protocol.PublishEvent). The app's event reader posts each to the app, which
passes those screens follow (comics, pets, pets found) on to every open screen. They do not
bubble: each message is handled once, where it is posted.
"""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from textual.message import Message

from petwatch.protocol import (
    ComicJobReply,
    ErrorEvent,
    Event,
    FoldersEvent,
    GroupEvent,
    IndexedEvent,
    PetEvent,
    ProgressReply,
    RemovedEvent,
    ReportReply,
    StateEvent,
    StatusReply,
    UpgradeEvent,
)

Data = TypeVar("Data")


class DaemonEvent(Message, Generic[Data], bubble=False):
    kind: ClassVar[Event]

    def __init__(self, data: Data) -> None:
        super().__init__()
        self.data = data

    def copy(self) -> DaemonEvent[Data]:
        """The same event as a new message: a message is posted to one receiver."""
        return type(self)(self.data)


class StateChanged(DaemonEvent[StateEvent], bubble=False):
    kind = Event.STATE


class StatusChanged(DaemonEvent[StatusReply], bubble=False):
    kind = Event.STATUS


class Progress(DaemonEvent[ProgressReply], bubble=False):
    kind = Event.PROGRESS


class Indexed(DaemonEvent[IndexedEvent], bubble=False):
    kind = Event.INDEXED


class Removed(DaemonEvent[RemovedEvent], bubble=False):
    kind = Event.REMOVED


class Reported(DaemonEvent[ReportReply], bubble=False):
    kind = Event.REPORT


class FoldersChanged(DaemonEvent[FoldersEvent], bubble=False):
    kind = Event.FOLDERS


class DaemonError(DaemonEvent[ErrorEvent], bubble=False):
    kind = Event.ERROR


class Upgrade(DaemonEvent[UpgradeEvent], bubble=False):
    kind = Event.UPGRADE


class PetPhotos(DaemonEvent[PetEvent], bubble=False):
    kind = Event.PET


class GroupChanged(DaemonEvent[GroupEvent], bubble=False):
    kind = Event.GROUP


class ComicChanged(DaemonEvent[ComicJobReply], bubble=False):
    kind = Event.COMIC


# kind -> its message: every kind but hello, the stream's handshake, which the reader handles at once
MESSAGES: dict[Event, type[DaemonEvent]] = {message.kind: message for message in DaemonEvent.__subclasses__()}
