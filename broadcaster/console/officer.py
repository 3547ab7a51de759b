"""The duty officer's pages: a new alert (from a template or blank), editing the draft, and
submitting it - an ACTUAL alert only after the officer types the word ACTUAL.

Live and exercise never share a page: the officer first says which one this is, and each mode
has its own list of templates, its own colours, words and pattern, and its own submit button.
A template is only ever offered, and accepted, under its own mode.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from approvals.alert import Mode
from approvals.templates import Template
from broadcaster.alerts import store
from broadcaster.alerts.service import Actor, Outcome
from broadcaster.api.alert_routes import as_api_errors
from broadcaster.api.framework import path_id
from broadcaster.auth.permissions import Permission
from broadcaster.console import alert_forms
from broadcaster.console.alert_forms import FormErrors
from broadcaster.console.alert_view import alert_page, load_alert
from broadcaster.console.pages import Pages, Viewer, see_other
from broadcaster.console.render import mode_look, render_page
from broadcaster.web_errors import ApiError
from broadcaster.web_keys import ALERTS, ENGINE, SETTINGS

pages = Pages()
DRAFT: Final = Permission.draft_alerts
# The word an officer types to submit an ACTUAL alert: deliberate, and never what a drill asks.
ACTUAL_WORD: Final = "ACTUAL"


def _mode(request: web.Request) -> Mode:
    name = request.match_info["mode"]
    if name not in (Mode.live.value, Mode.exercise.value):
        raise ApiError(404, "Not found", f"There is no kind of alert called {name!r}.")
    return Mode(name)


def _template(request: web.Request, mode: Mode) -> Template:
    found = request.app[ALERTS].rules.templates.templates.get(request.match_info["name"])
    if found is None or found.mode is not mode:
        # A live template is never reachable under the exercise pages, nor the reverse.
        raise ApiError(
            404, "Not found", f"There is no {mode.value} template {request.match_info['name']!r}."
        )
    return found


def _actor(viewer: Viewer) -> Actor:
    return Actor(viewer.user, viewer.source_address)


def _field_of(error: ApiError) -> dict[str, str]:
    """An API refusal as form-field messages (`values.area` is the form's `value-area`)."""
    if not error.fields:
        return {"form": error.detail}
    errors: dict[str, str] = {}
    for item in error.fields:
        name = item.field
        if name.startswith("values."):
            name = "value-" + name.removeprefix("values.")
        elif "." in name:
            name = alert_forms.field_for(name.removeprefix("content.").split("."), "")
        errors.setdefault(name, item.message)
    return errors


# --- choosing what kind of alert ---------------------------------------------------------------


@pages.page("GET", "/console/alerts/new", title="New alert", permission=DRAFT)
async def choose_mode(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return render_page(request, "new.html", viewer, title="New alert")


@pages.page("GET", "/console/alerts/new/{mode}", title="New alert", permission=DRAFT)
async def choose_template(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    mode = _mode(request)
    templates = request.app[ALERTS].rules.templates
    chosen = [templates.templates[name] for name in templates.names(mode)]
    look = mode_look(mode.value)
    return render_page(
        request,
        "new_mode.html",
        viewer,
        title=f"New {look.label} alert",
        mode=mode.value,
        look=look,
        templates=chosen,
    )


# --- from a template ---------------------------------------------------------------------------


def _template_page(
    request: web.Request,
    viewer: Viewer,
    mode: Mode,
    template: Template,
    *,
    values: dict[str, str],
    channels: list[str],
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    look = mode_look(mode.value)
    return render_page(
        request,
        "template_form.html",
        viewer,
        title=f"{look.label}: {template.title}",
        status=status,
        mode=mode.value,
        look=look,
        template=template,
        values=values,
        errors=errors or {},
        channels=alert_forms.channel_choices(request.app[SETTINGS].directory, mode, channels),
    )


@pages.page(
    "GET", "/console/alerts/new/{mode}/template/{name}", title="New alert", permission=DRAFT
)
async def template_form(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    mode = _mode(request)
    template = _template(request, mode)
    listed = template.content.get("channels")
    channels = [str(name) for name in listed] if isinstance(listed, list | tuple) else []
    return _template_page(request, viewer, mode, template, values={}, channels=channels)


@pages.page(
    "POST", "/console/alerts/new/{mode}/template/{name}", title="New alert", permission=DRAFT
)
async def draft_from_template(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    mode = _mode(request)
    template = _template(request, mode)
    form = await request.post()
    values = {name: alert_forms.text(form, f"value-{name}") for name in template.placeholders}
    channels = alert_forms.chosen_channels(form)
    service = request.app[ALERTS]
    try:
        async with as_api_errors():
            content = service.from_template(template.name, values, channels)
            outcome = await service.draft(_actor(viewer), content)
    except ApiError as error:
        return _template_page(
            request,
            viewer,
            mode,
            template,
            values=values,
            channels=channels,
            errors=_field_of(error),
            status=error.status,
        )
    return see_other(f"/console/alerts/{outcome.alert_id}?done=drafted")


# --- written out -------------------------------------------------------------------------------


def _blank_page(
    request: web.Request,
    viewer: Viewer,
    mode: Mode,
    *,
    values: dict[str, str],
    channels: list[str],
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    look = mode_look(mode.value)
    return render_page(
        request,
        "blank_form.html",
        viewer,
        title=f"New {look.label} alert, written out",
        status=status,
        mode=mode.value,
        look=look,
        values=values,
        errors=errors or {},
        choices=alert_forms.CHOICES,
        channels=alert_forms.channel_choices(request.app[SETTINGS].directory, mode, channels),
    )


@pages.page("GET", "/console/alerts/new/{mode}/blank", title="New alert", permission=DRAFT)
async def blank_form(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    mode = _mode(request)
    return _blank_page(request, viewer, mode, values=alert_forms.blank_defaults(mode), channels=[])


@pages.page("POST", "/console/alerts/new/{mode}/blank", title="New alert", permission=DRAFT)
async def draft_blank(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    mode = _mode(request)
    form = await request.post()
    values = alert_forms.posted_values(form)
    channels = alert_forms.chosen_channels(form)
    try:
        content = alert_forms.blank_content(form, mode)
        async with as_api_errors():
            outcome = await request.app[ALERTS].draft(_actor(viewer), content)
    except FormErrors as error:
        return _blank_page(
            request, viewer, mode, values=values, channels=channels, errors=error.errors, status=422
        )
    except ApiError as error:
        return _blank_page(
            request,
            viewer,
            mode,
            values=values,
            channels=channels,
            errors=_field_of(error),
            status=error.status,
        )
    return see_other(f"/console/alerts/{outcome.alert_id}?done=drafted")


# --- editing the draft -------------------------------------------------------------------------


async def _edit_page(
    request: web.Request,
    viewer: Viewer,
    alert_id: int,
    *,
    values: dict[str, str] | None = None,
    channels: list[str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    view = await load_alert(request, alert_id)
    content = view.stored.record.content
    look = mode_look(view.alert.mode)
    return render_page(
        request,
        "edit.html",
        viewer,
        title=f"Edit alert {alert_id}",
        status=status,
        alert=view.alert,
        view=view,
        look=look,
        infos=content.infos,
        values=values if values is not None else alert_forms.edit_values(content),
        errors=errors or {},
        channels=alert_forms.channel_choices(
            request.app[SETTINGS].directory,
            content.mode,
            channels if channels is not None else list(content.channels),
        ),
    )


@pages.page("GET", r"/console/alerts/{alert_id:\d+}/edit", title="Edit alert", permission=DRAFT)
async def edit_form(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return await _edit_page(request, viewer, path_id(request, "alert_id"))


@pages.page("POST", r"/console/alerts/{alert_id:\d+}/edit", title="Edit alert", permission=DRAFT)
async def edit(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    alert_id = path_id(request, "alert_id")
    form = await request.post()
    async with request.app[ENGINE].connect() as connection:
        alert = await store.get_alert(connection, alert_id)
        current = (
            await store.load_version(connection, alert.current_version_id)
            if alert is not None and alert.current_version_id is not None
            else None
        )
    if current is None:
        raise ApiError(404, "Not found", f"There is no alert {alert_id}.")
    values = alert_forms.posted_values(form)
    channels = alert_forms.chosen_channels(form)
    try:
        content = alert_forms.edited_content(current.record.content, form)
        async with as_api_errors():
            await request.app[ALERTS].edit(_actor(viewer), alert_id, content)
    except FormErrors as error:
        return await _edit_page(
            request,
            viewer,
            alert_id,
            values=values,
            channels=channels,
            errors=error.errors,
            status=422,
        )
    except ApiError as error:
        return await _edit_page(
            request,
            viewer,
            alert_id,
            values=values,
            channels=channels,
            errors=_field_of(error),
            status=error.status,
        )
    return see_other(f"/console/alerts/{alert_id}?done=edited")


# --- submit, take back, withdraw ---------------------------------------------------------------


async def _act_then_show(
    request: web.Request, viewer: Viewer, alert_id: int, action: Any, done: str
) -> web.StreamResponse:
    """Run an alert action; on refusal show the alert with the reason, on warnings show them."""
    try:
        async with as_api_errors():
            outcome: Outcome = await action(request.app[ALERTS])
    except ApiError as error:
        view = await load_alert(request, alert_id)
        return alert_page(
            request,
            viewer,
            view,
            status=error.status,
            errors={item.field: item.message for item in error.fields},
            message=error.detail,
        )
    if outcome.findings:
        view = await load_alert(request, alert_id)
        return alert_page(request, viewer, view, findings=list(outcome.findings))
    return see_other(f"/console/alerts/{alert_id}?done={done}")


@pages.page(
    "POST", r"/console/alerts/{alert_id:\d+}/submit", title="Submit alert", permission=DRAFT
)
async def submit(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    alert_id = path_id(request, "alert_id")
    form = await request.post()
    view = await load_alert(request, alert_id)
    if view.alert.mode == Mode.live.value:
        typed = alert_forms.text(form, "confirm_mode").upper()
        if typed != ACTUAL_WORD:
            return alert_page(
                request,
                viewer,
                view,
                status=422,
                errors={
                    "confirm_mode": (
                        f"Type {ACTUAL_WORD} to confirm that this is a real alert for the "
                        "public. If it is a drill, start a new EXERCISE alert instead."
                    )
                },
            )
    actor = _actor(viewer)
    return await _act_then_show(
        request, viewer, alert_id, lambda s: s.submit(actor, alert_id), "submitted"
    )


@pages.page(
    "POST", r"/console/alerts/{alert_id:\d+}/recall", title="Recall alert", permission=DRAFT
)
async def recall(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    alert_id = path_id(request, "alert_id")
    actor = _actor(viewer)
    return await _act_then_show(
        request, viewer, alert_id, lambda s: s.recall(actor, alert_id), "recalled"
    )


@pages.page(
    "POST", r"/console/alerts/{alert_id:\d+}/withdraw", title="Withdraw alert", permission=DRAFT
)
async def withdraw(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    alert_id = path_id(request, "alert_id")
    actor = _actor(viewer)
    return await _act_then_show(
        request,
        viewer,
        alert_id,
        lambda s: s.withdraw(actor, alert_id, "withdrawn in the console"),
        "withdrawn",
    )
