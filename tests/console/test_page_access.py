"""Every console page, for every role: without a session GET goes to the sign-in page and
anything else is 401; a role without the page's permission gets 403; a role with it is served.
Deny by default: a page must declare its access, and nothing under /console or /sign-in is
routed except through a declared page."""

from __future__ import annotations

import re

import pytest

from approvals.roles import Role
from broadcaster.auth.web_sessions import SAFE_METHODS
from broadcaster.console import all_pages
from broadcaster.console.pages import Access, Page
from tests.console.conftest import PERSON_FOR, Console

PAGES = all_pages()
GUARDED = [page for page in PAGES if page.access is not Access.public]


def _path(page: Page) -> str:
    return re.sub(r"{\w+(:[^}]*)?}", "1", page.path)


def _id(page: Page) -> str:
    return f"{page.method} {page.path}"


def test_every_page_declares_one_kind_of_access() -> None:
    for page in PAGES:
        assert isinstance(page.access, Access), _id(page)
        assert (page.access is Access.permission) == (page.permission is not None), _id(page)
    assert len({_id(page) for page in PAGES}) == len(PAGES)


async def test_nothing_in_the_console_is_routed_around_the_declarations(console: Console) -> None:
    declared = {(page.method, re.sub(r"{(\w+):[^}]*}", r"{\1}", page.path)) for page in PAGES}
    for route in console.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or not path.startswith(("/console", "/sign-in", "/sign-out")):
            continue
        assert (route.method, path) in declared, f"{route.method} {path} is not a declared page"


# One test per role walking every page (not one per page): the app is built once per test.


async def test_without_a_session_get_goes_to_sign_in_and_the_rest_is_401(console: Console) -> None:
    wrong = []
    for page in GUARDED:
        response = await console.client.request(page.method, _path(page), allow_redirects=False)
        if page.method in SAFE_METHODS:
            location = response.headers.get("Location", "")
            if response.status != 303 or not location.startswith("/sign-in?next="):
                wrong.append(f"{_id(page)}: {response.status} {location}")
        elif response.status != 401:
            wrong.append(f"{_id(page)}: {response.status}")
    assert wrong == []


async def _open(console: Console, page: Page, person: str) -> tuple[int, str]:
    if page.method in SAFE_METHODS:
        response = await console.get(_path(page), person)
    else:
        response = await console.post(_path(page), person)
    try:
        body = await response.text() if response.status == 403 else ""
        return response.status, body
    finally:
        response.close()


@pytest.mark.parametrize("role", list(Role), ids=str)
async def test_each_role_is_served_or_refused_as_each_page_declares(
    console: Console, role: Role
) -> None:
    person = PERSON_FOR[role]
    wrong = []
    for page in PAGES:
        await console.sign_in_directly(person)  # afresh: some pages (sign-out) end it
        status, body = await _open(console, page, person)
        if page.access is Access.pending:
            ok = status == 303  # signed in already: the second-factor steps send them on
        elif page.access is Access.public:
            ok = status < 500
        elif page.allows(role):
            ok = status not in (401, 403) and status < 500
        else:
            ok = status == 403 and "needs permission" in body
        if not ok:
            wrong.append(f"{_id(page)}: {status}")
    assert wrong == [], f"{role}: {wrong}"


async def test_a_session_waiting_for_its_second_factor_reaches_nothing(console: Console) -> None:
    await console.sign_in_directly("admin", second_factor=False)
    wrong = []
    for page in GUARDED:
        if page.access not in (Access.signed_in, Access.permission):
            continue
        if page.method in SAFE_METHODS:
            response = await console.get(_path(page), "admin")
            ok = response.status == 303 and response.headers["Location"] == "/sign-in/code"
        else:
            response = await console.post(_path(page), "admin")
            ok = response.status == 401
        if not ok:
            wrong.append(f"{_id(page)}: {response.status}")
    assert wrong == []


async def test_the_second_factor_page_is_for_the_session_that_needs_it(console: Console) -> None:
    await console.sign_in_directly("approver1", second_factor=False)
    assert (await console.get("/sign-in/code", "approver1")).status == 200
    # Nobody enrols a second one over the first from the sign-in steps.
    enrol = await console.get("/sign-in/enrol", "approver1")
    assert (enrol.status, enrol.headers["Location"]) == (303, "/sign-in/code")


def test_roles_are_the_ones_the_tests_cover() -> None:
    assert set(PERSON_FOR) == set(Role)
