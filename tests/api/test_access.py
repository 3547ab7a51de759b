"""Every API route, for every role: 401 without a token, 403 without the permission, and never
401/403 for a role that holds it. Deny by default: a route must name its permission."""

from __future__ import annotations

import re

import pytest

from approvals.roles import Role
from broadcaster.api import all_routes
from broadcaster.api.framework import API_PREFIX, Route
from broadcaster.auth.permissions import allows
from tests.api.conftest import PEOPLE, ApiClient

ROUTES = [route for route in all_routes() if not route.public]
# One person per role.
PERSON_FOR = {role: next(name for name, (r, _) in PEOPLE.items() if r is role) for role in Role}


def _path(route: Route) -> str:
    return API_PREFIX + re.sub(r"{\w+}", "1", route.path)


def _id(route: Route) -> str:
    return f"{route.method} {route.path}"


def test_every_route_names_a_permission_or_is_public() -> None:
    for route in all_routes():
        assert route.public or route.permission is not None, _id(route)


@pytest.mark.parametrize("route", ROUTES, ids=_id)
async def test_no_token_is_401(api: ApiClient, route: Route) -> None:
    response = await api.client.request(route.method, _path(route), json={})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("route", ROUTES, ids=_id)
async def test_each_role_is_allowed_or_refused_as_the_permissions_say(
    api: ApiClient, route: Route
) -> None:
    assert route.permission is not None
    for role, person in PERSON_FOR.items():
        response = await api.client.request(
            route.method, _path(route), json={}, headers=api.auth(person)
        )
        if allows(role, route.permission):
            assert response.status not in (401, 403), f"{role} refused {_id(route)}"
            assert response.status < 500
        else:
            assert response.status == 403, f"{role} allowed {_id(route)}: {response.status}"
