"""UserAgent.from_settings: the one mapping from settings to the agent (call, serve, campaigns)."""

from __future__ import annotations

from autocall.config import Settings, TrunkSettings
from autocall.telephony.call import UserAgent


async def test_settings_and_trunk_become_the_agents_config() -> None:
    trunk = TrunkSettings(host="127.0.0.1", port=9, transport="udp", user="alice",
                          password="s3cret", register=True)
    settings = Settings(trunk=TrunkSettings(), bind_host="127.0.0.1", bind_port=0,
                        advertised_host="203.0.113.7")
    ua = await UserAgent.from_settings(settings, trunk, proxy=trunk.uri)
    try:
        config = ua.sip.config
        assert (config.bind_host, config.transport, config.advertise_host) == (
            "127.0.0.1", "udp", "203.0.113.7")
        assert config.user == "alice" and config.credentials is not None
        assert (config.credentials.username, config.credentials.password) == ("alice", "s3cret")
        assert config.register and config.registrar == "sip:127.0.0.1:9"
        assert config.proxy == "sip:127.0.0.1:9"
        assert ua.on_call is None
    finally:
        await ua.close()


async def test_without_a_trunk_the_settings_own_is_used_anonymously() -> None:
    settings = Settings(trunk=TrunkSettings(host="127.0.0.1", port=5070), bind_port=0)
    ua = await UserAgent.from_settings(settings)
    try:
        config = ua.sip.config
        assert config.user == "autocall" and config.credentials is None
        assert not config.register and config.registrar is None and config.proxy is None
    finally:
        await ua.close()


async def test_the_trunks_caller_id_header_becomes_the_agents() -> None:
    from autocall.sip.callerid import CallerIdStyle

    trunk = TrunkSettings(host="127.0.0.1", port=9, caller_id_header=CallerIdStyle.PAI)
    ua = await UserAgent.from_settings(Settings(trunk=trunk, bind_port=0))
    try:
        assert ua.caller_id_header is CallerIdStyle.PAI
    finally:
        await ua.close()
