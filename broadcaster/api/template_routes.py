"""The template catalogue, live and exercise apart."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from approvals.templates import Template
from broadcaster.api.alert_models import PlaceholderOut, TemplateList, TemplateOut
from broadcaster.api.framework import Api, Caller
from broadcaster.auth.permissions import Permission
from broadcaster.web_errors import ApiError
from broadcaster.web_keys import ALERTS

api = Api()


class TemplateQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: str | None = Field(default=None, pattern="^(live|exercise)$")


def _out(template: Template) -> TemplateOut:
    return TemplateOut(
        name=template.name,
        mode=template.mode.value,
        title=template.title,
        summary=template.summary,
        placeholders=[
            PlaceholderOut(name=name, label=label) for name, label in template.placeholders.items()
        ],
        content=dict(template.content),
    )


@api.route(
    "GET",
    "/templates",
    summary="Alert templates; ?mode=live or ?mode=exercise.",
    permission=Permission.view_templates,
    query=TemplateQuery,
    response=TemplateList,
    tag="templates",
)
async def list_templates(
    request: web.Request, _caller: Caller, query: TemplateQuery
) -> TemplateList:
    templates = request.app[ALERTS].rules.templates
    chosen = [t for t in templates.templates.values() if query.mode in (None, t.mode.value)]
    return TemplateList(templates=[_out(t) for t in sorted(chosen, key=lambda t: t.name)])


@api.route(
    "GET",
    "/templates/{name}",
    summary="One template, with its placeholders.",
    permission=Permission.view_templates,
    response=TemplateOut,
    errors=(404,),
    tag="templates",
)
async def get_template(request: web.Request, _caller: Caller) -> TemplateOut:
    templates = request.app[ALERTS].rules.templates
    template = templates.templates.get(request.match_info["name"])
    if template is None:
        raise ApiError(404, "Not Found", f"there is no template {request.match_info['name']!r}")
    return _out(template)
