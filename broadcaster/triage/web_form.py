"""The public report form at /report: no sign-in, no JavaScript, usable on a 360 px phone and
with a screen reader.

No CSRF token: nobody is signed in, so there is no session to ride. Abuse is held back by a
limit per source address (triage.form_max_per_window per form_window_seconds), and by a hidden
"website" field people never see (labelled so that screen-reader users are told to leave it
empty): a submission that fills it is a bot, answered with the thank-you page and not stored
(it is counted in /metrics). A hidden one-time token names each filled-in form, so pressing
Submit twice, or reloading after a slow answer, stores the report once.

Errors re-show the form with what was typed, a summary at the top linking to each field, and
the field marked invalid with its message.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from multidict import MultiDictProxy

from broadcaster.triage.ingest import IngestBusy, IngestSlow
from broadcaster.triage.normalise import FORM_SOURCE
from broadcaster.triage.runtime import TRIAGE
from broadcaster.web_pages import environment

__all__ = ["routes"]

routes = web.RouteTableDef()

TEXT_MIN: Final = 3
TEXT_MAX: Final = 2000
SHORT_MAX: Final = 200
_TOKEN_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@dataclass
class FormState:
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # field -> message


def _render(template: str, status: int = 200, **context: object) -> web.Response:
    html = environment.get_template(template).render(**context)
    response = web.Response(text=html, content_type="text/html", status=status)
    # The form is for people, never for framing by another site.
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


def _form_page(
    request: web.Request, state: FormState, *, status: int = 200, notice: str | None = None
) -> web.Response:
    triage = request.app[TRIAGE]
    token = state.values.get("token") or secrets.token_urlsafe(18)
    places = sorted(place.name for place, _ in triage.rules.gazetteer.places)
    return _render(
        "report_form.html",
        status,
        values=state.values,
        errors=state.errors,
        token=token,
        places=places,
        notice=notice,
        text_max=TEXT_MAX,
    )


@routes.get("/report")
async def report_form(request: web.Request) -> web.Response:
    return _form_page(request, FormState())


@routes.post("/report")
async def submit_report(request: web.Request) -> web.Response:
    triage = request.app[TRIAGE]
    address = request.remote or "unknown"
    posted = await request.post()
    state = _read(posted)
    wait = triage.form_limiter.retry_after(address)
    if wait > 0:
        triage.metrics.form_refused.labels("rate_limited").inc()
        minutes = max(1, math.ceil(wait / 60))
        response = _form_page(
            request,
            state,
            status=429,
            notice=(
                f"Too many reports have been sent from this connection. Please try again in "
                f"{minutes} minute{'s' if minutes != 1 else ''}. Your words are kept below. "
                "If a life is in danger, call 911 now."
            ),
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    if posted.get("website"):
        # A bot filled the field people never see: thank it, store nothing, count it.
        triage.form_limiter.record(address)
        triage.metrics.form_refused.labels("honeypot").inc()
        return _render("report_thanks.html")
    _validate(state)
    if state.errors:
        return _form_page(request, state, status=422)
    latitude, longitude = _coordinates(state)
    report = triage.normaliser.report(
        source=FORM_SOURCE,
        external_id=state.values["token"],
        text=state.values["text"],
        received_at=triage.clock(),
        author_id=f"address:{address}",
        author_name=state.values.get("name") or None,
        contact=state.values.get("contact") or None,
        latitude=latitude,
        longitude=longitude,
        place=state.values.get("place") or None,
    )
    try:
        await triage.ingestor.submit([report])
    except IngestSlow:
        pass  # queued: it will be stored, and the token makes a resubmission harmless
    except IngestBusy:
        return _form_page(
            request,
            state,
            status=503,
            notice=(
                "We are receiving very many reports and could not take yours just now. Please "
                "press Send again in a minute; your words are kept below. If a life is in "
                "danger, call 911 now."
            ),
        )
    triage.form_limiter.record(address)
    return _render("report_thanks.html")


def _read(posted: MultiDictProxy[Any]) -> FormState:
    values: dict[str, str] = {}
    for name in ("text", "name", "contact", "place", "latitude", "longitude", "token"):
        value = posted.get(name)
        values[name] = value.strip() if isinstance(value, str) else ""
    token = values["token"]
    if not (16 <= len(token) <= 64 and set(token) <= _TOKEN_CHARS):
        values["token"] = secrets.token_urlsafe(18)
    return FormState(values)


def _validate(state: FormState) -> None:
    values, errors = state.values, state.errors
    text = values["text"]
    if len(text) < TEXT_MIN:
        errors["text"] = "Please say what is happening (a few words at least)."
    elif len(text) > TEXT_MAX:
        errors["text"] = f"Please keep it under {TEXT_MAX} characters (now {len(text)})."
    for name, label in (("name", "Your name"), ("contact", "Phone or e-mail"), ("place", "Place")):
        if len(values[name]) > SHORT_MAX:
            errors[name] = f"{label} is too long: at most {SHORT_MAX} characters."
    latitude, longitude = values["latitude"], values["longitude"]
    if bool(latitude) != bool(longitude):
        missing = "longitude" if latitude else "latitude"
        errors[missing] = "Give both latitude and longitude, or neither."
        return
    if latitude:
        for name, bound in (("latitude", 90.0), ("longitude", 180.0)):
            try:
                number = float(values[name].replace(",", "."))
            except ValueError:
                errors[name] = f"Write the {name} as a number, e.g. 38.0521."
                continue
            if not math.isfinite(number) or abs(number) > bound:
                errors[name] = f"The {name} must be between -{bound:g} and {bound:g}."


def _coordinates(state: FormState) -> tuple[float | None, float | None]:
    if not state.values["latitude"]:
        return None, None
    return (
        float(state.values["latitude"].replace(",", ".")),
        float(state.values["longitude"].replace(",", ".")),
    )
