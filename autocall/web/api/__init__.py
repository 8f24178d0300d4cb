"""The ``/v1`` routers; ``routers`` is what the app mounts."""

from fastapi import APIRouter

from autocall.web.api import calls, campaigns, contacts, dnc, docs, recordings

routers: list[APIRouter] = [campaigns.router, contacts.router, dnc.router, recordings.router,
                            calls.router, docs.router]
