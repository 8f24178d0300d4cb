"""The runner: drives a sans-I/O ``dialogue.engine.Engine`` over one live call.

The engine decides, the runner does: it turns ``Say``/``Play`` into audio on the call
(barge-in flushes it), keys and hang-ups into engine events, ``StartTimer`` into one
deadline, ``Collect(speech=True)`` into a vosk recogniser on the received audio,
``Record`` into a WAV with a JSON sidecar, ``Webhook`` into a background HTTP request,
and ``Transfer`` into a REFER (blind) or a dialled, announced and bridged second call
(attended). Nothing here blocks the event loop: TTS renders in a worker thread (ahead of
need, see :func:`prompts_of`) and a webhook never holds the call.

In-band DTMF detection (the media layer's largest per-call CPU cost) runs only while a key
could change something: it is switched on before the prompts of a state that takes keys
are queued, so an early key is heard, and off where the engine drops keys, such as an
unskippable (``skippable: false``) message (``Engine.accepts_keys``).
RFC 4733 and SIP INFO keys do not need the detector.

The call is a :class:`RunnerCall`: ``autocall.telephony.call.Call`` and any driver with
the same verbs runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import soundfile as sf

from autocall.audio import convert, g722
from autocall.audio.amd import AnsweredBy
from autocall.audio.check import prompt_pcm
from autocall.audio.tones import beep
from autocall.dialogue import engine as eng
from autocall.dialogue.schema import GatherNode, MenuNode, Tree, resolve_headers, spoken_prompts
from autocall.dialogue.template import render
from autocall.files import private_file
from autocall.speech.tts import PromptText, TtsError, render_prompt
from autocall.telephony.call import CallEvent, DigitEvent, HangupEvent
from autocall.telephony.webhooks import WebhookClient

if TYPE_CHECKING:
    from concurrent.futures import Future

    from autocall.speech.asr import SpeechEvent, SpeechRecognizer

__all__ = ["AudioCache", "CallRunner", "RunResult", "RunnerCall", "prompt_rates", "prompts_of",
           "tree_uses_speech"]

log = logging.getLogger(__name__)

Pcm = npt.NDArray[np.int16]
_RATE = 8000
_NO_SPEECH_MODEL: set[str] = set()  # languages whose vosk model failed to load
_SILENCE_RMS = 300.0  # about -40 dBFS: below it a recording frame counts as silence


class RunnerMedia(Protocol):
    """A call's media as the runner uses it: received audio, key detection, bridging."""

    on_audio: list[Callable[[Pcm], None]]  # subscribers to the received 20 ms frames
    inband_detection: bool
    rate: int  # samples/s of the call's audio: 8000, or 16000 on a G.722 call

    @property
    def closed(self) -> bool: ...

    async def play(self, pcm: Pcm) -> bool: ...


class Leg(Protocol):
    """A call the runner speaks on and ends: the caller's, or the agent's it consults."""

    @property
    def media(self) -> RunnerMedia: ...

    async def play(self, pcm: Pcm) -> bool: ...

    async def hangup(self) -> object: ...

    async def wait_answer(self, timeout: float | None = None) -> str: ...

    async def wait_ended(self, timeout: float | None = None) -> object: ...


class Dialer(Protocol):
    """Places the agent's call of an attended transfer (``telephony.call.UserAgent``)."""

    async def call(self, target: str, *, caller_id: str | None = ...,
                   ring_timeout: float | None = ...) -> Leg: ...


class RunnerCall(Leg, Protocol):
    """What the runner needs from a call (``telephony.call.Call`` provides it)."""

    @property
    def ua(self) -> Dialer: ...

    @property
    def transfer_code(self) -> int | None: ...

    def flush(self) -> None: ...

    def events(self) -> AsyncIterator[CallEvent]: ...

    async def transfer(self, target: str) -> int: ...


@dataclass
class RunResult:
    """What the call record needs from the dialogue (DESIGN.md §4)."""

    outcome: str
    path: list[str]
    digits: str
    variables: dict[str, str]
    recording: str | None = None
    error: str | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    caller_hung_up: bool = False
    inputs: int = 0  # keys and spoken answers the caller gave
    failed: bool = False  # the tree could not be delivered (a prompt could not play)

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome, "path": self.path, "digits": self.digits,
            "variables": self.variables, "recording": self.recording, "error": self.error,
            "duration": round(self.ended_at - self.started_at, 3),
        }


class AudioCache:
    """Prompt audio as int16 at a call's rate (8 kHz; 16 kHz for G.722 calls), rendered or
    converted once per process and rate, and kept."""

    def __init__(self, tts_cache_dir: Path) -> None:
        self.tts_cache_dir = Path(tts_cache_dir)
        self._pcm: dict[tuple[str, ...], Pcm] = {}
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}

    async def say(self, action: eng.Say, rate: int = _RATE) -> Pcm:
        """The prompt spoken at ``rate``: the TTS cache keeps one render per rate, so a
        16 kHz call hears the engine's 16 kHz audio, not 8 kHz audio resampled."""
        key = ("say", str(rate), action.text, action.language, action.voice or "",
               *(action.tts or ()))
        prompt = PromptText(action.text, action.language, action.voice, action.tts)
        return await self._get(
            key, lambda: _wav_pcm(render_prompt(prompt, self.tts_cache_dir, rate=rate), rate))

    async def warm(self, prompts: list[eng.Say], rates: tuple[int, ...] = (_RATE,)) -> list[str]:
        """Render ``prompts`` now (before calls) at each of ``rates``; returns the errors of
        those that failed."""
        errors = []
        for rate in rates:
            for prompt in prompts:
                try:
                    await self.say(prompt, rate)
                except (TtsError, OSError) as exc:
                    errors.append(str(exc))
        return errors

    async def play(self, action: eng.Play, rate: int = _RATE) -> Pcm:
        """The file's audio at ``rate``, checked as ``prompts validate`` checks it
        (AudioFileError)."""
        return await self._get(("play", str(rate), action.path),
                               lambda: prompt_pcm(action.path, rate))

    async def _get(self, key: tuple[str, ...], load: Callable[[], Pcm]) -> Pcm:
        cached = self._pcm.get(key)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._pcm:
                self._pcm[key] = await asyncio.to_thread(load)
        return self._pcm[key]


def prompt_rates(codecs: tuple[str, ...]) -> tuple[int, ...]:
    """The rates prompts may be needed at with these codecs (G.722 calls are 16 kHz)."""
    return (_RATE, 16000) if "G722" in codecs else (_RATE,)


def _wav_pcm(path: Path, want: int = _RATE) -> Pcm:
    data, rate = sf.read(str(path), dtype="int16", always_2d=False)
    if rate != want or np.ndim(data) != 1:
        return _file_pcm(path, want)
    return np.asarray(data, dtype=np.int16)


def _file_pcm(path: Path, want: int = _RATE) -> Pcm:
    samples, rate = convert.read_audio(path, upload_rules=False)
    prepared = convert.prepare(samples, rate, want)
    return np.clip(np.round(prepared * 32768.0), -32768, 32767).astype(np.int16)


@dataclass
class _Recording:
    """A voicemail being taken: received frames until silence, key, hang-up or limit."""

    action: eng.Record
    path: Path
    node: str
    started: float
    rate: int = _RATE
    frames: list[Pcm] = field(default_factory=list)
    heard: bool = False
    quiet_since: float | None = None
    done: bool = False


class CallRunner:
    """Runs one prompt tree over one call; ``await runner.run()`` returns the result.

    ``clock`` is wall-clock seconds (the engine reads opening hours from it); timers use
    the same clock. ``recordings_dir`` receives ``<time>-<call id>-<node>.wav`` plus a
    ``.json`` sidecar. Blind transfers REFER the caller (RFC 3515); attended ones dial the
    target through the call's UserAgent, announce, and bridge.
    """

    def __init__(
        self,
        call: RunnerCall,
        tree: Tree,
        variables: dict[str, str] | None = None,
        *,
        audio: AudioCache | None = None,
        tts_cache_dir: Path = Path(".autocall/tts-cache"),
        recordings_dir: Path = Path("recordings"),
        webhooks: WebhookClient | None = None,
        call_facts: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        max_seconds: float = 3600.0,
        speech_model: object | None = None,  # a vosk model (asr.load_model)
        answered_by: AnsweredBy | None = None,
        transfer: Callable[[str], Awaitable[int]] | None = None,  # instead of call.transfer
    ) -> None:
        self.call = call
        self._transfer_to = transfer
        self.tree = tree
        # answered_by (AMD): "machine" starts at the tree's machine: node (issue 16)
        self.engine = eng.Engine(tree, variables, answered_by=answered_by)
        self.audio = audio or AudioCache(tts_cache_dir)
        self.recordings_dir = Path(recordings_dir)
        self.webhooks = webhooks or WebhookClient()
        self.facts = dict(call_facts or {})
        self.clock = clock
        self.max_seconds = max_seconds
        self.recording_path: str | None = None
        self._events: asyncio.Queue[eng.Event] = asyncio.Queue()
        self._prompts: deque[eng.Say | eng.Play] = deque()
        self._prompt_wake = asyncio.Event()
        self._generation = 0
        self._playing = False
        self._deadline: float | None = None
        self._recording: _Recording | None = None
        self.speech_model = speech_model
        self._speech: SpeechRecognizer | None = None
        self._speech_down: g722.Decimator | None = None
        self._watched: Future[list[tuple[str, float]]] | None = None  # a decode we wait for
        self._ended = False
        self._caller_hung_up = False
        self._inputs = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._detect_media: RunnerMedia | None = None  # whose in-band detection we steer
        self._audio_media: RunnerMedia | None = None  # whose received frames we take now
        self._failure: str | None = None  # why the call was ended without delivering the tree
        self._notes: list[str] = []  # errors the tree survived (a refused transfer)

    # --- public ------------------------------------------------------------------------

    async def run(self) -> RunResult:
        started = self.clock()
        pump = self._spawn(self._pump_call_events())
        player = self._spawn(self._play_prompts())
        media = self.call.media
        if media.inband_detection:  # a call that has it off for its own reasons keeps it off
            self._detect_media = media
        try:
            actions = self.engine.start(started)
            self._steer_detection()
            await self._apply(actions)
            limit = started + self.max_seconds
            while not self.engine.finished and self._failure is None:
                event = await self._next_event(limit)
                if self._failure is not None:
                    break
                if event is None:
                    self.engine.error = f"call exceeded {self.max_seconds:.0f} s"
                    await self._hangup()
                    break
                await self._handle(event)
            if self._failure is not None:
                await self._hangup()
        finally:
            pump.cancel()
            player.cancel()
            for task in list(self._tasks):
                task.cancel()
            if self._recording is not None:
                self._finish_recording("hangup")
            if self._audio_media is not None:
                self._audio_media.on_audio.remove(self._on_audio)
                self._audio_media = None
            if self._detect_media is not None:
                self._detect_media.inband_detection = True  # leave it as we found it
        errors = [e for e in (self._failure, self.engine.error, *self._notes) if e]
        return RunResult(
            outcome="error" if self._failure else self.engine.outcome or "error",
            path=list(self.engine.path),
            digits=self.engine.digits,
            variables=dict(self.engine.variables),
            recording=self.recording_path,
            error="; ".join(errors) or None,
            started_at=started,
            ended_at=self.clock(),
            caller_hung_up=self._caller_hung_up,
            inputs=self._inputs,
            failed=self._failure is not None,
        )

    # --- the loop ----------------------------------------------------------------------

    async def _next_event(self, limit: float) -> eng.Event | None:
        deadline = self._deadline if self._deadline is not None else limit
        wait = max(0.0, min(deadline, limit) - self.clock())
        try:
            return await asyncio.wait_for(self._events.get(), wait)
        except TimeoutError:
            if self._speech is not None and self._speech.in_speech and self._deadline:
                self._deadline = self.clock() + 0.3  # the caller is still answering
                return await self._next_event(limit)
            if self._deadline is not None and self.clock() >= self._deadline - 1e-3:
                self._deadline = None
                return eng.Timeout()
            return None if self.clock() >= limit else eng.Timeout()

    async def _handle(self, event: eng.Event) -> None:
        if isinstance(event, eng.Digit | eng.SpeechResult) and not self.engine.keys_ignored:
            self._inputs += 1  # a key pressed into a notice answers nothing
        if isinstance(event, eng.Digit) and self._speech is not None:
            self._speech.cancel()
            self._speech = None  # a key answers the collect: drop the spoken one
        if isinstance(event, eng.Digit) and self.engine.interruptible:
            self._flush_prompts()
        if isinstance(event, eng.Digit) and self._recording is not None:
            if event.digit == self._recording.action.end_on_key:
                self._finish_recording("key")
            return
        if isinstance(event, eng.CallerHangup):
            self._caller_hung_up = self._ended = True
            self._flush_prompts()
            if self._recording is not None:
                self._finish_recording("hangup")  # the message left so far still counts
                self._events.put_nowait(eng.CallerHangup())
                return
        actions = self.engine.handle(event, self.clock())
        self._steer_detection()  # before _apply queues prompts: a key early in them counts
        await self._apply(actions)
        if not self.engine.accepts_speech:
            self._speech = None  # else the voice would flush a message the engine plays on
        self._sync_audio()

    def _steer_detection(self) -> None:
        """Detector on only while keys matter (call right after each engine step)."""
        media = self._detect_media
        if media is None:
            return
        wanted = self.engine.accepts_keys
        if media.inband_detection != wanted:
            media.inband_detection = wanted

    async def _apply(self, actions: list[eng.Action]) -> None:
        for action in actions:
            if isinstance(action, eng.Say | eng.Play):
                self._prompts.append(action)
                self._prompt_wake.set()
                self._spawn(self._prefetch(action))
            elif isinstance(action, eng.StartTimer):
                self._deadline = action.deadline
            elif isinstance(action, eng.Collect):
                await self._start_speech(action)  # keys always flow in
            elif isinstance(action, eng.Record):
                await self._start_recording(action)
            elif isinstance(action, eng.Webhook):
                self._spawn(self._webhook(action))
            elif isinstance(action, eng.Transfer):
                self._spawn(self._transfer(action))
            elif isinstance(action, eng.Hangup):
                await self._hangup()

    def _fail(self, why: str) -> None:
        """End the call without finishing the tree; the record is failed with ``why``."""
        log.warning("ending the call: %s", why)
        self._failure = why
        self._events.put_nowait(eng.Timeout())  # wakes the loop, which stops and hangs up

    async def _hangup(self) -> None:
        if self._ended:
            return
        self._ended = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.call.hangup(), 5.0)

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- call events -------------------------------------------------------------------

    async def _pump_call_events(self) -> None:
        """The call's keys as engine events, then one CallerHangup when it ends."""
        async for event in self.call.events():
            if isinstance(event, DigitEvent):
                self._events.put_nowait(eng.Digit(event.digit))
            elif isinstance(event, HangupEvent):
                break
        self._events.put_nowait(eng.CallerHangup())

    # --- prompts -----------------------------------------------------------------------

    async def _play_prompts(self) -> None:
        while True:
            while not self._prompts:
                self._prompt_wake.clear()
                await self._prompt_wake.wait()
            action = self._prompts.popleft()
            generation = self._generation
            try:
                pcm = await self._pcm(action, self.call.media.rate)
            except (TtsError, convert.AudioFileError, OSError, RuntimeError) as exc:
                # Silence in its place would look like a delivered message: end the call as
                # failed (the campaign retries it) and say why in the record.
                if generation == self._generation:
                    self._fail(f"prompt cannot play: {exc}")
                    return
                continue  # flushed while it rendered: it was not going to play
            if generation != self._generation:
                continue  # flushed while it rendered
            self._playing = True
            try:
                played = await self.call.play(pcm) if len(pcm) else True
            finally:
                self._playing = False
            if played is not False and generation == self._generation:
                self._events.put_nowait(eng.PromptFinished())
                if not self._prompts and self._speech is not None:
                    self._speech.prompt_finished()  # its no-input clock starts now

    async def _prefetch(self, action: eng.Say | eng.Play) -> None:
        """Render a queued prompt now, so it follows the one playing without a gap."""
        with contextlib.suppress(Exception):  # the player reports failures when it gets there
            await self._pcm(action, self.call.media.rate)

    def _flush_prompts(self) -> None:
        self._generation += 1
        self._prompts.clear()
        if self._playing:
            self.call.flush()

    # --- received audio: recording and speech -------------------------------------------

    def _sync_audio(self) -> None:
        """Take the received frames only while a recording or a spoken answer needs them:
        a call nobody listens to runs no jitter buffer (`MediaSession`, "Playout on
        demand"). Never from inside `_on_audio`: the session is going through its
        subscribers then; an ended recording or answer lets go at the next event."""
        want = self._recording is not None or self._speech is not None
        if want and self._audio_media is None:
            self._audio_media = self.call.media
            self._audio_media.on_audio.append(self._on_audio)
        elif not want and self._audio_media is not None:
            self._audio_media.on_audio.remove(self._on_audio)
            self._audio_media = None

    def _on_audio(self, frame: Pcm) -> None:
        """Every received 20 ms frame (media clock): voicemail and the speech recogniser."""
        if self._recording is not None:
            self._on_record_frame(self._recording, frame)
        if self._speech is not None:
            self._feed_speech(self._speech, frame)

    async def _start_speech(self, action: eng.Collect) -> None:
        self._speech = None
        if not action.speech:
            return
        model = await self._speech_model()
        if model is None:
            return  # keys still work; the warning was logged once
        from autocall.speech import asr  # vosk is an optional extra: import on first use
        from autocall.speech.sphinx import SphinxModel

        if isinstance(model, SphinxModel) and not model.offloaded:
            # pocketsphinx holds the GIL for its 45-65 ms decode: in a worker process, not
            # on the loop that paces every call's media (bench/bench_sphinx_loop.py)
            await asyncio.to_thread(model.offload)
        intents = asr.intents_from_phrases(list(action.grammar)) if action.grammar else {}
        self._speech = asr.SpeechRecognizer(
            model, intents, lang=self.tree.language, no_input_timeout=3600.0,
            prompt_playing=True)
        # The recogniser and its VAD are tuned at 8 kHz: a wideband call's audio is
        # brought down to it (speech below 4 kHz is what they were tuned on).
        self._speech_down = g722.Decimator() if self.call.media.rate != _RATE else None
        self._sync_audio()

    async def _speech_model(self) -> object | None:
        language = self.tree.language
        if self.speech_model is None and language not in _NO_SPEECH_MODEL:
            try:
                from autocall.speech import asr

                self.speech_model = await asyncio.to_thread(asr.load_model, None, language)
            except Exception as exc:  # ModelError, ImportError (no vosk), OSError
                log.warning("spoken answers off for %r (keys still work): %s", language, exc)
                _NO_SPEECH_MODEL.add(language)  # say it once per process, not per call
        return self.speech_model or None

    def _feed_speech(self, rec: SpeechRecognizer, frame: Pcm) -> None:
        if self._speech_down is not None:
            frame = self._speech_down.process(frame)
        self._speech_events(rec, rec.feed(frame))

    def _speech_events(self, rec: SpeechRecognizer, events: list[SpeechEvent]) -> None:
        from autocall.speech import asr

        decoding = rec.decoding
        if decoding is not None and decoding is not self._watched:
            # the decode ends in a worker process: hear its result even if no frame follows
            self._watched = decoding
            loop = asyncio.get_running_loop()

            def decoded(_: object) -> None:  # in the executor's thread
                with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                    loop.call_soon_threadsafe(self._poll_speech, rec)

            decoding.add_done_callback(decoded)
        for event in events:
            if isinstance(event, asr.SpeechStarted):
                self._flush_prompts()  # barge-in by voice
            elif isinstance(event, asr.SpeechResult):
                self._events.put_nowait(eng.SpeechResult(event.intent, event.confidence))
            elif isinstance(event, asr.NoMatch):
                # its text may name a choice among other words: that must not select it
                self._events.put_nowait(eng.SpeechResult("", 0.0))
        if rec.done and self._speech is rec:
            self._speech = None

    def _poll_speech(self, rec: SpeechRecognizer) -> None:
        if self._speech is rec and not self._ended:
            self._speech_events(rec, rec.poll())

    # --- recording ---------------------------------------------------------------------

    async def _start_recording(self, action: eng.Record) -> None:
        node = self.engine.node or "record"
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        call_id = _safe(self.facts.get("call_id") or self.facts.get("number") or "call")
        path = self.recordings_dir / f"{stamp}-{call_id}-{_safe(node)}.wav"
        rate = self.call.media.rate
        rec = _Recording(action, path, node, self.clock(), rate)
        self._recording = rec
        self._sync_audio()
        if action.beep:
            await self.call.play(beep(rate=rate))
        self._spawn(self._record_limit(rec))

    async def _record_limit(self, rec: _Recording) -> None:
        remaining = rec.action.max_seconds - (self.clock() - rec.started)
        await asyncio.sleep(max(0.0, remaining))
        if self._recording is rec:
            self._finish_recording("max-length")

    def _on_record_frame(self, rec: _Recording, frame: Pcm) -> None:
        if rec.done:
            return
        rec.frames.append(np.array(frame, dtype=np.int16, copy=True))
        rms = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64)))) if len(frame) else 0.0
        now = self.clock()
        if rms >= _SILENCE_RMS:
            rec.heard, rec.quiet_since = True, None
            return
        if rec.quiet_since is None:
            rec.quiet_since = now
        limit = rec.action.end_on_silence
        if limit > 0 and rec.heard and now - rec.quiet_since >= limit:
            self._finish_recording("silence")

    def _finish_recording(self, reason: str) -> None:
        rec = self._recording
        if rec is None or rec.done:
            return
        rec.done = True
        self._recording = None
        pcm = np.concatenate(rec.frames) if rec.frames else np.zeros(0, dtype=np.int16)
        duration = len(pcm) / rec.rate
        path = ""
        if len(pcm):
            private_file(rec.path)  # 0600 in a 0700 folder: a voice is personal data
            sf.write(str(rec.path), pcm, rec.rate, subtype="PCM_16")
            sidecar = {
                "caller": self.facts.get("caller") or self.facts.get("number"),
                "callee": self.facts.get("callee"),
                "call_id": self.facts.get("call_id"),
                "time": dt.datetime.fromtimestamp(rec.started, dt.UTC).isoformat(),
                "duration": round(duration, 2),
                "node": rec.node,
                "reason": reason,
                "tree": self.tree.name,
            }
            private_file(rec.path.with_suffix(".json")).write_text(
                json.dumps(sidecar, indent=2) + "\n")
            path = str(rec.path)
            self.recording_path = path
        self._events.put_nowait(eng.RecordingFinished(path, duration, reason))

    # --- webhooks and transfers ---------------------------------------------------------

    async def _webhook(self, action: eng.Webhook) -> None:
        try:
            headers = resolve_headers(action.headers)
        except KeyError as exc:
            log.error("webhook %s not sent: environment variable %s (in its headers) is not "
                      "set", action.url, exc.args[0])
            self._events.put_nowait(eng.WebhookResult(0, None))  # the tree's on_failure
            return
        status, body = await self.webhooks.post(action.url, action.payload,
                                                timeout=action.timeout, retries=action.retries,
                                                headers=headers)
        self._events.put_nowait(eng.WebhookResult(status, body))

    async def _transfer(self, action: eng.Transfer) -> None:
        ok = False
        try:
            if action.mode == "attended":
                ok = await self._attended_transfer(action)
            else:
                transfer = self._transfer_to or self.call.transfer
                code = await asyncio.wait_for(transfer(action.target), action.timeout + 5)
                ok = code is True or 200 <= code < 300
        except Exception as exc:  # a failed transfer returns the caller to the tree
            log.warning("transfer to %s failed: %s", action.target, exc)
            self._notes.append(f"transfer to {action.target} failed: {exc}")
        else:
            if not ok:
                sip = self.call.transfer_code
                self._notes.append(f"transfer to {action.target} refused"
                                   + (f" (SIP {sip})" if sip else ""))
        self._events.put_nowait(eng.TransferResult(ok))

    async def _attended_transfer(self, action: eng.Transfer) -> bool:
        """Dial the target, announce the caller, then bridge both legs until one hangs up.

        The bridge relays audio frames between the two calls here (a B2BUA), so it works
        with any phone, not only those that honour REFER with Replaces (RFC 3891). No
        answer within ``action.timeout`` seconds returns False: the caller is back in the
        tree.
        """
        consult = await self.call.ua.call(action.target, ring_timeout=action.timeout,
                                          caller_id=self.facts.get("callee") or None)
        consult.media.inband_detection = False  # nobody listens to the agent's keys
        try:
            if await consult.wait_answer(action.timeout + 1.0) != "in-progress":
                return False
            for prompt in action.announce:
                await consult.play(await self._pcm(prompt, consult.media.rate))
            await _bridge(self.call, consult)
            return True
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consult.hangup(), 5.0)

    async def _pcm(self, action: eng.Say | eng.Play, rate: int) -> Pcm:
        return await (self.audio.say(action, rate) if isinstance(action, eng.Say)
                      else self.audio.play(action, rate))


async def _bridge(a: Leg, b: Leg) -> None:
    """Relay each leg's received 20 ms frames to the other until either call ends."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Future[bool]] = set()

    def relay(src: Leg, dst: Leg) -> Callable[[Pcm], None]:
        # A wideband leg bridged to a narrowband one: its frames change rate on the way.
        change: Callable[[Pcm], Pcm] | None = None
        if src.media.rate > dst.media.rate:
            change = g722.Decimator().process
        elif src.media.rate < dst.media.rate:
            change = g722.Interpolator().process

        def on_audio(frame: Pcm) -> None:
            if not dst.media.closed:
                out = np.array(frame, copy=True) if change is None else change(frame)
                fut = asyncio.ensure_future(dst.media.play(out))
                pending.add(fut)
                fut.add_done_callback(pending.discard)
        return on_audio

    to_b, to_a = relay(a, b), relay(b, a)
    a.media.on_audio.append(to_b)
    b.media.on_audio.append(to_a)
    try:
        ends = [loop.create_task(a.wait_ended()), loop.create_task(b.wait_ended())]
        try:
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in ends:
                task.cancel()
    finally:
        a.media.on_audio.remove(to_b)
        b.media.on_audio.remove(to_a)
        for fut in list(pending):
            fut.cancel()


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "+-_" else "_" for c in text)[:60]


def prompts_of(tree: Tree, variables: dict[str, str] | None = None) -> list[eng.Say]:
    """Every spoken prompt of ``tree`` as the engine would say it for these variables.

    For rendering ahead of calls (TTS is a cache, not a call-time dependency): a prompt
    whose template depends on answers given during the call is rendered at call time.
    """
    values = {k: str(v) for k, v in tree.variables.items()}
    values.update(variables or {})
    found = {eng.Say(render(p.say, values), p.language or tree.language, p.voice,
                     tuple(p.tts) if p.tts else None): None
             for _, p in spoken_prompts(tree)}
    return list(found)


def tree_uses_speech(tree: Tree) -> bool:
    """True if a menu or gather of ``tree`` takes spoken answers (load a model first)."""
    return any(isinstance(n, MenuNode) and n.menu.speech
               or isinstance(n, GatherNode) and n.gather.speech for n in tree.nodes.values())
