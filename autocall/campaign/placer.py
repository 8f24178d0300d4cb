"""The dialer's real ``CallPlacer``: dial with the SIP user agent, run the tree, report.

``autocall.campaign.dialer`` only knows :class:`CallRequest` → :class:`CallRecord`; this
module is where a request becomes an INVITE, the answered call runs its prompt tree
through :class:`autocall.telephony.runner.CallRunner`, and the call's status, SIP code
and dialogue facts come back as the call record's fields (DESIGN.md §4).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine

from autocall.campaign.dialer import CallRequest
from autocall.campaign.trees import STORE_PREFIX, TreeLibrary, TreesError
from autocall.config import Settings
from autocall.dialogue import loader
from autocall.dialogue.schema import Tree
from autocall.telephony.call import UserAgent
from autocall.telephony.outbound import Dial, Dialer, OutboundCall, Services
from autocall.telephony.record import CallRecord
from autocall.telephony.runner import AudioCache
from autocall.telephony.webhooks import StatusCallbacks, WebhookClient

__all__ = ["SipPlacer", "TreeCache", "from_settings", "load_tree"]


def load_tree(path: str | Path) -> Tree:
    """A prompt tree from YAML through the safe reader, with file:line:col errors."""
    return loader.load(path)


class TreeCache:
    """Each tree loaded once per process: a file (it does not change during a campaign)
    or a published version in the store (``store:NAME@N`` never changes)."""

    def __init__(self, library: TreeLibrary | None = None) -> None:
        self.library = library
        self._trees: dict[str, Tree] = {}

    def get(self, spec: str) -> Tree:
        stored = spec.startswith(STORE_PREFIX)
        key = spec if stored else str(Path(spec).resolve())
        if key not in self._trees:
            if stored and self.library is None:
                raise TreesError(422, f"{spec}: a tree in the store, and no store given")
            self._trees[key] = (self.library.load(spec) if stored and self.library
                                else load_tree(spec))
        return self._trees[key]


class SipPlacer:
    """Places each request through ``ua`` (an ``autocall.telephony.call.UserAgent``).

    ``target`` turns a request into a Request-URI, e.g. ``"sip:{number}@pbx:5060"``;
    ``trees`` loads each campaign's tree once; ``audio`` shares rendered prompts across
    calls. Safe for ``channels`` concurrent calls on one loop.
    """

    def __init__(
        self,
        ua: Dialer,
        *,
        target: str | Callable[[CallRequest], str],
        trees: TreeCache | None = None,
        audio: AudioCache | None = None,
        tts_cache_dir: Path = Path(".autocall/tts-cache"),
        recordings_dir: Path = Path("recordings"),
        webhooks: WebhookClient | None = None,
        status_callbacks: StatusCallbacks | None = None,
        max_call_seconds: float = 600.0,
        speech_model: object | None = None,
    ) -> None:
        self.ua = ua
        self.target = target
        self.trees = trees or TreeCache()
        self.services = Services(
            audio=audio or AudioCache(tts_cache_dir), recordings_dir=recordings_dir,
            webhooks=webhooks or WebhookClient(),
            callbacks=status_callbacks or StatusCallbacks(None),
            max_call_seconds=max_call_seconds, speech_model=speech_model)

    def uri(self, request: CallRequest) -> str:
        if callable(self.target):
            return self.target(request)
        return self.target.format(number=request.number, trunk=request.trunk or "")

    def recording_path(self, request: CallRequest) -> Path:
        """Where a campaign with ``recording: true`` records this attempt (stereo WAV)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"{stamp}-{request.attempt_id}-{_safe(request.number)}.wav"
        return self.services.recordings_dir / _safe(request.campaign) / name

    async def place(self, request: CallRequest) -> CallRecord:
        """Place one call; with ``request.recording`` the whole call (media from the
        answer on, left = callee, right = us) is recorded and its path is the record's."""
        wav = self.recording_path(request) if request.recording else None
        tree: Tree = await asyncio.to_thread(self.trees.get, request.tree)
        dial = Dial(self.uri(request), tree, request.number, request.variables,
                    caller_id=request.caller_id, ring_timeout=request.ring_timeout,
                    headers={"X-Autocall-Campaign": request.campaign,
                             "X-Autocall-Attempt": str(request.attempt_id)},
                    record_to=wav, amd=request.amd,
                    key=f"{request.campaign}/{request.attempt_id}")
        result = await OutboundCall(self.ua, dial, self.services,
                                    on_progress=request.on_progress,
                                    on_ringing=request.on_ringing).place()
        if wav is not None and wav.exists():  # made when media started
            result = replace(result, recording=str(wav))
        return result


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "+-_" else "_" for c in text)[:60]


def trunk_target(settings: Settings) -> Callable[[CallRequest], str]:
    """Request-URI for a request: its campaign's ``trunk`` (``sip:host:port``) or the default."""
    default = settings.trunk.hostport

    def uri(request: CallRequest) -> str:
        trunk = (request.trunk or "").removeprefix("sip:") or default
        return f"sip:{request.number}@{trunk}"

    return uri


@contextlib.asynccontextmanager
async def from_settings(settings: Settings) -> AsyncIterator[SipPlacer]:
    """The placer ``autocall campaign run`` uses: a UserAgent on the configured trunk.

    Trunk, credentials, bind address and caches come from ``AUTOCALL_*`` (see
    :mod:`autocall.config`); the agent REGISTERs first when the trunk asks for it.
    """
    trunk = settings.trunk
    engine = create_engine(settings.database_url, pool_pre_ping=True)  # the stored trees
    ua = await UserAgent.from_settings(settings)
    try:
        if trunk.register and not await ua.wait_registered(10.0):
            raise RuntimeError(f"REGISTER with {trunk.uri} failed: {ua.sip.register_error}")
        yield SipPlacer(ua, target=trunk_target(settings), tts_cache_dir=settings.tts_cache_dir,
                        recordings_dir=settings.recordings_dir,
                        trees=TreeCache(TreeLibrary(engine, settings.prompts_dir)))
    finally:
        await ua.close()
        engine.dispose()
