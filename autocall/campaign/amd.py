"""The ``amd:`` section of a campaign YAML: answering-machine detection per campaign.

    amd:
      enabled: true
      on_machine: message      # leave the tree's message after the beep; or hangup
      greeting_ms: 3100        # optional detector parameters (autocall.audio.amd.AmdConfig)

Outcomes (``autocall.campaign.model.Outcome``): ``machine`` (hung up on a machine; retried
later, by default 3 hours), ``left-message`` (the message went on the machine; not
retried unless ``retry.delays`` names it) and ``fax`` (never retried).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from autocall.audio.amd import AmdConfig
from autocall.telephony.answer import AmdOptions

__all__ = ["AmdSettings"]

_Ms = Field(default=None, ge=20, le=120_000)


class AmdSettings(BaseModel):
    """Campaign AMD: off unless ``enabled``; unset parameters keep AmdConfig's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    on_machine: Literal["message", "hangup"] = "message"
    initial_silence_ms: int | None = _Ms
    greeting_ms: int | None = _Ms
    after_greeting_silence_ms: int | None = _Ms
    total_analysis_ms: int | None = _Ms
    end_silence_ms: int | None = _Ms

    def options(self) -> AmdOptions | None:
        """What each call of the campaign does, or None when AMD is off."""
        if not self.enabled:
            return None
        params = self.model_dump(exclude={"enabled", "on_machine"}, exclude_none=True)
        config = dataclasses.replace(AmdConfig(), **params)
        return AmdOptions(on_machine=self.on_machine, config=config)
