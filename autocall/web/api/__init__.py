"""The ``/v1`` routers; ``routers`` is what the app mounts."""

from fastapi import APIRouter

from autocall.web.api import trees

routers: list[APIRouter] = [trees.router]
