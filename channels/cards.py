"""The alert card: one image per alert version and language, for Instagram (which posts images,
not text) and for previews.

`render_card(version, language)` is pure: the same version, language and installed fonts give
the same bytes. The card is 1080 x 1350 (4:5, Instagram's tallest feed shape) and is read on a
phone at about a third of that size, so no text is smaller than 32 px.

Mode is impossible to miss: an ACTUAL alert has a red banner and frame; an EXERCISE or TEST alert
has a blue banner at the top AND bottom saying EXERCISE EXERCISE EXERCISE and a pale diagonal
EXERCISE watermark across the whole card, so even a cropped screenshot reads as a drill.

Instagram's content publishing takes JPEG only, so the service serves the Instagram card as
JPEG (`CardFormat.jpeg`, ".jpg"); PNG stays the default for previews. The service serves
GET {card_base_url}/{identifier}/{language}.{suffix} by calling `render_card` (`card_url` builds
that address; `CardFormat.from_suffix` reads it back).
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Final

from PIL import Image, ImageDraw, ImageFont

from approvals.alert import EXERCISE_MARKING, Info, MsgType, is_exercise
from channels.base import AlertVersion

__all__ = [
    "CARD_SIZE",
    "MIN_TEXT_PX",
    "CardFormat",
    "CardLayout",
    "CardText",
    "card_url",
    "layout_card",
    "render_card",
]

CARD_SIZE: Final = (1080, 1350)
MIN_TEXT_PX: Final = 32  # about 12 pt on a phone showing the card 390 points wide
MARGIN: Final = 64
FRAME: Final = 14
BANNER_HEIGHT: Final = 230
FOOTER_HEIGHT: Final = 120

# Colours: red means a real alert, blue means a drill; never the other way round.
ACTUAL_RED: Final = (200, 16, 46)
EXERCISE_BLUE: Final = (11, 79, 156)
WHITE: Final = (255, 255, 255)
INK: Final = (17, 17, 17)
EXERCISE_PAPER: Final = (232, 240, 250)
WATERMARK: Final = (196, 214, 238)


class CardFormat(StrEnum):
    png = "png"  # previews: lossless, crisp text
    jpeg = "jpeg"  # Instagram: its content publishing fetches JPEG only

    @property
    def suffix(self) -> str:
        return "jpg" if self is CardFormat.jpeg else "png"

    @property
    def media_type(self) -> str:
        return f"image/{self.value}"

    @classmethod
    def from_suffix(cls, suffix: str) -> CardFormat:
        for card_format in cls:
            if suffix.lower().lstrip(".") in (card_format.suffix, card_format.value):
                return card_format
        raise ValueError(f"no card format for .{suffix}: use .png or .jpg")


def card_url(base_url: str, identifier: str, language: str, card_format: CardFormat) -> str:
    """Where the service serves the card for one version and language."""
    return f"{base_url.rstrip('/')}/{identifier}/{language}.{card_format.suffix}"


# --- words on the card -------------------------------------------------------------------------

_WORDS: Final = {
    "en": {
        "alert": "EMERGENCY ALERT",
        "update": "ALERT UPDATE",
        "cancel": "ALERT CANCELLED",
        "drill": "NOT A REAL EMERGENCY",
        "area": "Area",
        "until": "Until",
        "sent": "Sent",
        "see_caption": "(This text is in the caption below.)",
    },
    "es": {
        "alert": "ALERTA DE EMERGENCIA",
        "update": "ACTUALIZACIÓN",
        "cancel": "ALERTA CANCELADA",
        "drill": "NO ES UNA EMERGENCIA REAL",
        "area": "Zona",
        "until": "Hasta",
        "sent": "Enviada",
        "see_caption": "(Este texto está en la descripción.)",
    },
    "fr": {
        "alert": "ALERTE D'URGENCE",
        "update": "MISE À JOUR",
        "cancel": "ALERTE ANNULÉE",
        "drill": "CECI N'EST PAS UNE VRAIE URGENCE",
        "area": "Zone",
        "until": "Jusqu'à",
        "sent": "Envoyée",
        "see_caption": "(Ce texte est dans la légende.)",
    },
}


def _words(language: str) -> dict[str, str]:
    return _WORDS.get(language.split("-")[0].lower(), _WORDS["en"])


# --- fonts -------------------------------------------------------------------------------------

# Looked up in this order, so the choice is deterministic on a given machine. Pillow's own
# bundled font is the last resort and always present.
_FONT_DIRS: Final = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/opentype/noto"),
    Path("/usr/share/fonts/truetype/noto"),
    Path("/usr/share/fonts/noto-cjk"),
    Path("/usr/share/fonts/truetype/liberation"),
    Path("/Library/Fonts"),
    Path("C:/Windows/Fonts"),
)
_BOLD_NAMES: Final = (
    "DejaVuSans-Bold.ttf",
    "NotoSansCJK-Bold.ttc",
    "NotoSans-Bold.ttf",
    "LiberationSans-Bold.ttf",
    "Arial Bold.ttf",
    "arialbd.ttf",
)
_REGULAR_NAMES: Final = (
    "DejaVuSans.ttf",
    "NotoSansCJK-Regular.ttc",
    "NotoSans-Regular.ttf",
    "LiberationSans-Regular.ttf",
    "Arial.ttf",
    "arial.ttf",
)
_BUNDLED: Final = "<pillow>"

Font = ImageFont.FreeTypeFont


@lru_cache(maxsize=1)
def _font_files() -> tuple[tuple[str, ...], tuple[str, ...]]:
    def present(names: Sequence[str]) -> tuple[str, ...]:
        found = [str(d / n) for n in names for d in _FONT_DIRS if (d / n).is_file()]
        return (*found, _BUNDLED)

    return present(_BOLD_NAMES), present(_REGULAR_NAMES)


@lru_cache(maxsize=128)
def _font(path: str, size: int) -> Font:
    if path == _BUNDLED:
        font = ImageFont.load_default(size=size)
        if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow built without FreeType
            raise RuntimeError("Pillow needs FreeType to draw alert cards")
        return font
    return ImageFont.truetype(path, size)


@lru_cache(maxsize=4096)
def _draws(path: str, char: str) -> bool:
    """Whether the font has a glyph for `char` (a missing one draws as the .notdef box)."""
    if unicodedata.category(char)[0] in "ZC":
        return True
    font = _font(path, 24)
    return bytes(font.getmask(char)) != bytes(font.getmask("\uffff")) or char == "\uffff"


def _pick(paths: Sequence[str], texts: Sequence[str]) -> str:
    """The first font that can draw every character of `texts`, else the first font."""
    chars = {char for text in texts for char in text}
    for path in paths:
        if all(_draws(path, char) for char in chars):
            return path
    return paths[0]


# --- layout ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardText:
    text: str
    x: int
    y: int  # top of the line
    size: int  # pixels
    bold: bool
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class CardLayout:
    """Everything drawn on a card, in the order drawn; `body_bottom` is where body text ends."""

    exercise: bool
    accent: tuple[int, int, int]
    paper: tuple[int, int, int]
    texts: tuple[CardText, ...]
    body_top: int
    body_bottom: int
    footer_top: int
    bold_font: str
    regular_font: str


def layout_card(version: AlertVersion, language: str) -> CardLayout:
    """Where every line of the card goes. Pure; `render_card` draws it."""
    info = _info(version, language)
    exercise = is_exercise(version.content.status)
    words = _words(language)
    title = words[
        {MsgType.alert: "alert", MsgType.update: "update", MsgType.cancel: "cancel"}[
            version.content.msg_type
        ]
    ]
    headline = info.headline.strip()
    if exercise:
        headline = headline.replace(EXERCISE_MARKING, "").strip() or headline
    else:
        headline = headline.replace(EXERCISE_MARKING, "").strip()  # never on a real alert
    body_sections = _body_sections(info, words, headline)
    # (text, largest size): the first line as large as fits on one line.
    banner: list[tuple[str, int]] = (
        [(EXERCISE_MARKING, 72), (words["drill"], 40), (title, 40)]
        if exercise
        else [(title, 84), (info.event, 44)]
    )
    sent = f"{words['sent']} {version.sent.strftime('%Y-%m-%d %H:%M %Z')}"
    all_text = [*(line for line, _ in banner), *(text for text, *_ in body_sections), sent]
    bold_paths, regular_paths = _font_files()
    bold = _pick(bold_paths, all_text)
    regular = _pick(regular_paths, all_text)
    body_sections = [_drawable(section, bold, regular, words) for section in body_sections]
    accent = EXERCISE_BLUE if exercise else ACTUAL_RED
    width = CARD_SIZE[0] - 2 * MARGIN

    texts: list[CardText] = []
    y = FRAME + 28
    for line, largest in banner:
        size = _fitting_size(bold, line, width, largest, MIN_TEXT_PX)
        for wrapped in _wrap(_font(bold, size), line, width, 1):
            texts.append(CardText(wrapped, MARGIN, y, size, True, WHITE))
            y += int(size * 1.25)
        y += 4

    footer_top = CARD_SIZE[1] - FOOTER_HEIGHT - FRAME if exercise else CARD_SIZE[1] - 90
    body_top = BANNER_HEIGHT + FRAME + 40
    body_texts = _fit_body(body_sections, bold, regular, width, body_top, footer_top - 30)
    texts.extend(body_texts)
    body_bottom = max((t.y + int(t.size * 1.25) for t in body_texts), default=body_top)

    # Footer: the exercise marking again on a drill (the bottom of a screenshot is marked too).
    if exercise:
        size = _fitting_size(bold, EXERCISE_MARKING, width, 56, MIN_TEXT_PX)
        texts.append(CardText(EXERCISE_MARKING, MARGIN, footer_top + 12, size, True, WHITE))
        sent_y = footer_top + 12 + int(size * 1.2)
        sent_colour = WHITE
    else:
        sent_y = footer_top + 20
        sent_colour = INK
    with_sender = f"{sent} · {version.sender}"
    fits = _font(regular, MIN_TEXT_PX).getlength(with_sender) <= width
    [sent_line] = _wrap(_font(regular, MIN_TEXT_PX), with_sender if fits else sent, width, 1)
    texts.append(CardText(sent_line, MARGIN, sent_y, MIN_TEXT_PX, False, sent_colour))
    return CardLayout(
        exercise=exercise,
        accent=accent,
        paper=EXERCISE_PAPER if exercise else WHITE,
        texts=tuple(texts),
        body_top=body_top,
        body_bottom=body_bottom,
        footer_top=footer_top,
        bold_font=bold,
        regular_font=regular,
    )


# (text, size, bold, max lines, required): sections dropped from the end when space runs out.
_Section = tuple[str, int, bool, int, bool]


def _body_sections(info: Info, words: dict[str, str], headline: str) -> list[_Section]:
    sections: list[_Section] = [(headline, 72, True, 5, True)]
    if info.instruction:
        sections.append((info.instruction.strip(), 50, False, 6, True))
    areas = ", ".join(area.description for area in info.areas)
    if areas:
        sections.append((f"{words['area']}: {areas}", 40, True, 2, False))
    if info.expires is not None:
        until = info.expires.strftime("%Y-%m-%d %H:%M %Z")
        sections.append((f"{words['until']}: {until}", 40, False, 1, False))
    if info.web:
        sections.append((info.web, 36, False, 2, False))
    return sections


def _drawable(section: _Section, bold: str, regular: str, words: dict[str, str]) -> _Section:
    """The section, or a pointer to the caption when no installed font can draw its script
    (a row of empty boxes would tell nobody anything)."""
    text, size, is_bold, _lines, required = section
    path = bold if is_bold else regular
    if all(_draws(path, char) for char in text):
        return section
    return (words["see_caption"], min(size, 44), is_bold, 2, required)


def _fit_body(
    sections: list[_Section], bold: str, regular: str, width: int, top: int, bottom: int
) -> list[CardText]:
    """Lay the sections out from `top`; drop optional ones from the end, then shrink, until
    everything ends above `bottom`."""
    for shrink in (0, 8, 16):
        chosen = list(sections)
        while True:
            texts, end = _flow(chosen, bold, regular, width, top, shrink)
            if end <= bottom:
                return texts
            optional = [i for i, section in enumerate(chosen) if not section[4]]
            if not optional:
                break
            del chosen[optional[-1]]
    # Still too tall: the headline and instruction get fewer lines (ellipsised).
    required = [(t, max(MIN_TEXT_PX, s - 16), b, 3, r) for t, s, b, _, r in sections if r]
    texts, _ = _flow(required, bold, regular, width, top, 0)
    return [text for text in texts if text.y + text.size <= bottom]


def _flow(
    sections: Sequence[_Section], bold: str, regular: str, width: int, top: int, shrink: int
) -> tuple[list[CardText], int]:
    texts: list[CardText] = []
    y = top
    for text, size, is_bold, max_lines, _required in sections:
        size = max(MIN_TEXT_PX, size - shrink)
        font = _font(bold if is_bold else regular, size)
        for line in _wrap(font, text, width, max_lines):
            texts.append(CardText(line, MARGIN, y, size, is_bold, INK))
            y += int(size * 1.25)
        y += int(size * 0.6)
    return texts, y


def _fitting_size(path: str, text: str, width: int, start: int, smallest: int) -> int:
    size = start
    while size > smallest and _font(path, size).getlength(text) > width:
        size -= 2
    return size


def _wrap(font: Font, text: str, width: int, max_lines: int) -> list[str]:
    """Lines no wider than `width`: break at spaces, or between characters for scripts written
    without spaces; the last allowed line ends in an ellipsis when text is left over."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for token in _tokens(paragraph):
            candidate = (line + token) if line else token.lstrip()
            if font.getlength(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line.rstrip())
            line = token.lstrip()
            while font.getlength(line) > width:  # one token wider than the card
                cut = _longest_prefix(font, line, width)
                lines.append(line[:cut])
                line = line[cut:]
        if line:
            lines.append(line.rstrip())
    if len(lines) <= max_lines:
        return lines
    kept = lines[:max_lines]
    last = kept[-1]
    while last and font.getlength(last + "…") > width:
        last = last[:-1]
    kept[-1] = last.rstrip() + "…"
    return kept


def _tokens(paragraph: str) -> list[str]:
    """Words with their leading space; each wide (CJK) character on its own."""
    tokens: list[str] = []
    current = ""
    for char in paragraph:
        wide = unicodedata.east_asian_width(char) in "WF"
        if char == " " or wide:
            if current:
                tokens.append(current)
            current = char
            if wide:
                tokens.append(current)
                current = ""
        else:
            current += char
    if current:
        tokens.append(current)
    return tokens


def _longest_prefix(font: Font, text: str, width: int) -> int:
    cut = len(text)
    while cut > 1 and font.getlength(text[:cut]) > width:
        cut -= 1
    return cut


def _info(version: AlertVersion, language: str) -> Info:
    for info in version.content.infos:
        if info.language.lower() == language.lower():
            return info
    have = ", ".join(info.language for info in version.content.infos)
    raise ValueError(f"alert {version.identifier} has no {language!r} text; it has {have}")


# --- drawing -----------------------------------------------------------------------------------


def render_card(
    version: AlertVersion, language: str, card_format: CardFormat = CardFormat.png
) -> bytes:
    """The card image for one version in one of its languages (ValueError if it has no such
    language), as PNG (default) or JPEG bytes."""
    layout = layout_card(version, language)
    width, height = CARD_SIZE
    image = Image.new("RGB", CARD_SIZE, layout.paper)
    if layout.exercise:
        _watermark(image, layout.bold_font)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width - 1, height - 1), outline=layout.accent, width=FRAME)
    draw.rectangle((0, 0, width - 1, BANNER_HEIGHT + FRAME), fill=layout.accent)
    if layout.exercise:
        draw.rectangle((0, layout.footer_top, width - 1, height - 1), fill=layout.accent)
    else:
        draw.line((MARGIN, layout.footer_top, width - MARGIN, layout.footer_top), INK, 2)
    for text in layout.texts:
        font = _font(layout.bold_font if text.bold else layout.regular_font, text.size)
        draw.text((text.x, text.y), text.text, fill=text.colour, font=font)
    out = io.BytesIO()
    if card_format is CardFormat.jpeg:
        image.save(out, "JPEG", quality=92, subsampling=0)  # 4:4:4 keeps red text edges clean
    else:
        image.save(out, "PNG")
    return out.getvalue()


def _watermark(image: Image.Image, bold: str) -> None:
    """A pale diagonal EXERCISE pattern over the whole card, under the text."""
    width, height = image.size
    side = int((width**2 + height**2) ** 0.5) + 40
    layer = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(layer)
    font = _font(bold, 72)
    step_x = int(font.getlength("EXERCISE ")) + 20
    for row, y in enumerate(range(0, side, 150)):
        for x in range(-step_x + (row % 2) * step_x // 2, side, step_x):
            draw.text((x, y), "EXERCISE", fill=255, font=font)
    layer = layer.rotate(30, resample=Image.Resampling.BICUBIC)
    left, top = (side - width) // 2, (side - height) // 2
    mask = layer.crop((left, top, left + width, top + height))
    image.paste(WATERMARK, (0, 0, width, height), mask)
