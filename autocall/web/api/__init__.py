"""The ``/v1`` routers; ``routers`` is what the app mounts."""

from fastapi import APIRouter

routers: list[APIRouter] = []
