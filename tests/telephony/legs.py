"""A MediaSession dressed as the call leg a CallRunner drives (no SIP needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from autocall.media import MediaSession


class MediaLeg:
    """The verbs the runner needs, straight on a MediaSession."""

    def __init__(self, media: MediaSession) -> None:
        self.media = media

    async def play(self, pcm: Any) -> bool:
        return await self.media.play(pcm)

    def flush(self) -> None:
        self.media.flush()

    def events(self) -> AsyncIterator[Any]:
        return self.media.digits()

    async def hangup(self) -> None:
        await self.media.close()
