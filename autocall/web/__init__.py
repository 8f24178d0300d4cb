"""The web console and HTTP API (issue 15): a face on the store, never on the media.

``app.create_app`` builds the ASGI app; ``api/`` holds the ``/v1`` routers, ``pages/``
the server-rendered console; ``auth`` says who is asking and what their role lets them
do. Nothing here opens a SIP or RTP socket: calls and campaigns are dialed by a dialer
process that reads the same store.
"""
