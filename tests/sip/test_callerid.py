"""Caller-ID header styles (sans-I/O): From user, P-Asserted-Identity, Remote-Party-ID."""

from __future__ import annotations

import pytest

from autocall.sip.callerid import CallerIdStyle, caller_id_plan, parse_style
from autocall.sip.message import URI, Address, Request, parse_message
from autocall.sip.ua import SipUA, UAConfig

ACCOUNT = {"account_user": "alice", "domain": "pbx.example.com"}


def test_from_style_puts_the_caller_id_in_the_from_user() -> None:
    plan = caller_id_plan(CallerIdStyle.FROM, "+15550100", None, **ACCOUNT)
    assert (plan.from_user, plan.display, plan.headers) == ("+15550100", "+15550100", [])


def test_pai_keeps_the_account_in_from_and_asserts_the_caller_id() -> None:
    plan = caller_id_plan(CallerIdStyle.PAI, "+15550100", "Acme", **ACCOUNT)
    assert plan.from_user == "alice" and plan.display is None
    assert plan.headers == [("P-Asserted-Identity", '"Acme" <sip:+15550100@pbx.example.com>')]
    parsed = Address.parse(plan.headers[0][1])  # RFC 3325 §9.1: a name-addr
    assert (parsed.uri.user, parsed.uri.host, parsed.display) == (
        "+15550100", "pbx.example.com", "Acme")


def test_rpid_says_party_calling_unscreened_and_shown() -> None:
    plan = caller_id_plan(CallerIdStyle.RPID, "+15550100", None, **ACCOUNT)
    assert plan.from_user == "alice"
    [(name, value)] = plan.headers
    assert name == "Remote-Party-ID"
    parsed = Address.parse(value)
    assert parsed.uri.user == "+15550100"
    assert parsed.params == {"party": "calling", "screen": "no", "privacy": "off"}


@pytest.mark.parametrize("style", list(CallerIdStyle))
def test_no_caller_id_means_the_accounts_own_from_and_no_header(style: CallerIdStyle) -> None:
    plan = caller_id_plan(style, None, None, **ACCOUNT)
    assert (plan.from_user, plan.display, plan.headers) == (None, None, [])


@pytest.mark.parametrize("style", list(CallerIdStyle))
@pytest.mark.parametrize("bad", ["+1555\r\nX-Evil: 1", "+1 555 0100", "", "a@b", "<x>",
                                 "9" * 65, "caf\u00e9"])
def test_a_caller_id_that_is_not_a_uri_user_is_refused(style: CallerIdStyle, bad: str) -> None:
    with pytest.raises(ValueError, match="cannot be a SIP URI user"):
        caller_id_plan(style, bad, None, **ACCOUNT)


def test_a_display_name_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="control characters"):
        caller_id_plan(CallerIdStyle.PAI, "+15550100", "Acme\r\nX: y", **ACCOUNT)


def test_a_quote_in_the_display_name_stays_inside_the_quotes() -> None:
    plan = caller_id_plan(CallerIdStyle.PAI, "100", 'say "hi"', **ACCOUNT)
    assert Address.parse(plan.headers[0][1]).display == 'say "hi"'


@pytest.mark.parametrize(("text", "style"), [
    ("pai", CallerIdStyle.PAI), ("P-Asserted-Identity", CallerIdStyle.PAI),
    ("RPID", CallerIdStyle.RPID), ("remote-party-id", CallerIdStyle.RPID),
    (" from ", CallerIdStyle.FROM)])
def test_style_names(text: str, style: CallerIdStyle) -> None:
    assert parse_style(text) is style


def test_an_unknown_style_names_the_choices() -> None:
    with pytest.raises(ValueError, match="use from .* pai .* rpid"):
        parse_style("diversion")


@pytest.mark.parametrize("style", list(CallerIdStyle))
async def test_the_plan_goes_into_the_invite_the_agent_builds(style: CallerIdStyle) -> None:
    """SipUA.invite with send=False builds the INVITE and sends nothing: the plan's From
    user, display and headers are what the request carries, and it parses back."""
    ua = await SipUA.start(UAConfig(user="alice", proxy="sip:pbx.example.com"))
    try:
        plan = caller_id_plan(style, "+15550100", None, account_user="alice",
                              domain=ua.domain)
        session = ua.invite(URI.parse("sip:+15550199@pbx.example.com"),
                            from_user=plan.from_user, display=plan.display,
                            headers=plan.headers, send=False)
        invite = parse_message(bytes(session.usage.invite))
    finally:
        await ua.close()
    assert isinstance(invite, Request)
    from_ = Address.parse(invite.headers.get("From") or "")
    pai, rpid = invite.headers.get("P-Asserted-Identity"), invite.headers.get("Remote-Party-ID")
    if style is CallerIdStyle.FROM:
        assert from_.uri.user == "+15550100" and pai is None and rpid is None
    else:
        assert from_.uri.user == "alice"
        header = pai if style is CallerIdStyle.PAI else rpid
        assert header is not None and "<sip:+15550100@pbx.example.com>" in header
        assert (pai is None) != (rpid is None)
