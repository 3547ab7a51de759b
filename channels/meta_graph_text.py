"""The alert as the one post a Facebook Page or an Instagram account publishes: every language
when it fits, shortened languages when it does not, always with the link to the full alert.

Kept apart from the Graph client because it is pure text: it depends on the alert, never on
Graph, and both channels compose their posts with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from approvals.alert import EXERCISE_MARKING, Info, is_exercise
from channels.base import AlertVersion

__all__ = ["BLOCK_SEPARATOR", "compose_alert_text", "labels"]

_LABELS: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {
        "area": "Area",
        "expires": "Until",
        "more": "More",
        "contact": "Contact",
        "replaced": "Updated {at}: this replaces the earlier alert posted here.",
    },
    "es": {
        "area": "Zona",
        "expires": "Hasta",
        "more": "Más",
        "contact": "Contacto",
        "replaced": "Actualizado {at}: esto reemplaza la alerta publicada aquí antes.",
    },
    "fr": {
        "area": "Zone",
        "expires": "Jusqu'à",
        "more": "Plus",
        "contact": "Contact",
        "replaced": "Mis à jour {at} : ceci remplace l'alerte publiée ici auparavant.",
    },
    "zh": {
        "area": "地区",
        "expires": "有效期至",
        "more": "详情",
        "contact": "联系",
        "replaced": "{at} 更新：此内容取代此前在此发布的警报。",  # noqa: RUF001 (Chinese punctuation)
    },
}
BLOCK_SEPARATOR: Final = "\n\n———\n\n"


def labels(language: str) -> Mapping[str, str]:
    return _LABELS.get(language.split("-")[0].lower(), _LABELS["en"])


def _block(info: Info, detail: int) -> str:
    """One language: 3 = everything, 2 = headline + instruction + area/expiry,
    1 = headline + instruction, 0 = headline."""
    words = labels(info.language)
    lines = [info.headline.strip()]
    if detail >= 3 and info.description:
        lines.append(info.description.strip())
    if detail >= 1 and info.instruction:
        lines.append(info.instruction.strip())
    if detail >= 2:
        areas = ", ".join(area.description for area in info.areas)
        if areas:
            lines.append(f"{words['area']}: {areas}")
        if info.expires is not None:
            lines.append(f"{words['expires']}: {info.expires.strftime('%Y-%m-%d %H:%M %Z')}")
    if detail >= 3 and info.contact:
        lines.append(f"{words['contact']}: {info.contact}")
    return "\n\n".join(lines)


def _link(version: AlertVersion) -> str | None:
    return version.public_url or next((i.web for i in version.content.infos if i.web), None)


def compose_alert_text(version: AlertVersion, limit: int, *, footer: str | None = None) -> str:
    """The alert as one post of at most `limit` characters: every language in full when it fits
    (one post keeps one comment thread and one thing to reconcile); otherwise the first
    language in full and the others shortened, then less, always with the link to the full
    alert. Exercise alerts start with the exercise marking; actual alerts never carry it."""
    infos = version.content.infos
    exercise = is_exercise(version.content.status)
    link = _link(version)
    more = f"{labels(infos[0].language)['more']}: {link}" if link else None

    def assemble(blocks: Sequence[str]) -> str:
        body = BLOCK_SEPARATOR.join(blocks)
        if not exercise:
            # Screening refuses this, but a real alert must never read as a drill.
            body = body.replace(EXERCISE_MARKING, "").strip()
        elif not body.startswith(EXERCISE_MARKING):
            body = f"{EXERCISE_MARKING}\n\n{body}"
        return "\n\n".join(part for part in (body, more, footer) if part)

    first, others = infos[0], infos[1:]
    # (detail of the first language, detail of the others), most complete first.
    plans = [(3, 3), (3, 1), (3, 0), (2, 0), (1, 0), (0, 0)]
    for first_detail, other_detail in plans:
        text = assemble([_block(first, first_detail), *(_block(i, other_detail) for i in others)])
        if len(text) <= limit:
            return text
    # Only reachable with a tiny limit: the marking stays first, so a cut never loses it.
    return _truncate(assemble([_block(first, 0)]), limit)


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"
