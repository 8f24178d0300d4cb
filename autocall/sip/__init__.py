"""Our SIP user agent (RFC 3261): sans-I/O cores and a thin asyncio driver.

- ``message``: parse/serialise requests and responses (ValueError with a reason).
- ``sdp``: one-stream offer/answer for PCMU/PCMA + telephone-event (RFC 3264/4566).
- ``auth``: digest answers for 401/407, MD5 and SHA-256, qop=auth (RFC 7616/2617).
- ``transaction``: §17 client/server transactions, timers A–K, driven by ``now``.
- ``dialog``: §12 dialog state, in-dialog requests, vetting of tags/CSeq/source.
- ``invite``: the INVITE usage (§13–§15: CANCEL race, forks, 2xx until ACK), sans-I/O.
- ``refer``: being transferred (RFC 3515): which REFERs we follow, the NOTIFYs we send.
- ``transport``: asyncio UDP, TCP and TLS, bind address apart from advertised address.
- ``tls``: TLS settings (verification, CA, SNI, client certificate) and failure sentences.
- ``ua``: ``SipUA``, the driver: runs transactions and INVITE usages on the event loop.

Applications use ``autocall.telephony.call.UserAgent`` and ``Call``, which add media.
"""
