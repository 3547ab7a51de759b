"""The alert card: a real image, the same bytes every time, ACTUAL and EXERCISE impossible to
confuse, text that fits and stays readable on a phone, and no empty boxes for scripts the
installed fonts cannot draw."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image, ImageFont

from approvals.alert import EXERCISE_MARKING, MsgType, Status
from channels import cards
from channels.base import AlertVersion
from channels.cards import (
    ACTUAL_RED,
    BANNER_HEIGHT,
    CARD_SIZE,
    EXERCISE_BLUE,
    MARGIN,
    MIN_TEXT_PX,
    WATERMARK,
    CardFormat,
    card_url,
    layout_card,
    render_card,
)
from tests.channels import samples


def _version(**kwargs: Any) -> AlertVersion:
    return samples.version(channels=("instagram",), **kwargs)


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def _share(image: Image.Image, box: tuple[int, int, int, int], colour: tuple[int, ...]) -> float:
    """The share of pixels in `box` within a few levels of `colour` (JPEG-proof)."""
    data = image.crop(box).tobytes()  # RGB: three bytes a pixel
    pixels = [data[i : i + 3] for i in range(0, len(data), 3)]
    near = sum(1 for p in pixels if all(abs(a - b) <= 12 for a, b in zip(p, colour, strict=True)))
    return near / len(pixels)


# --- the image -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("card_format", "pil_format"), [(CardFormat.png, "PNG"), (CardFormat.jpeg, "JPEG")]
)
def test_a_card_is_a_4_by_5_image_in_the_asked_format(
    card_format: CardFormat, pil_format: str
) -> None:
    data = render_card(_version(), "en-US", card_format)
    image = Image.open(io.BytesIO(data))
    assert image.format == pil_format
    assert image.size == CARD_SIZE == (1080, 1350)
    assert len(data) < 8 * 1024 * 1024  # Instagram's limit


def test_the_same_version_gives_the_same_bytes() -> None:
    version = _version(status=Status.exercise, long=True)
    assert render_card(version, "en-US") == render_card(version, "en-US")
    assert render_card(version, "en-US", CardFormat.jpeg) == render_card(
        version, "en-US", CardFormat.jpeg
    )


def test_suffixes_and_urls() -> None:
    assert CardFormat.from_suffix("jpg") is CardFormat.jpeg is CardFormat.from_suffix(".JPEG")
    assert CardFormat.from_suffix("png").media_type == "image/png"
    with pytest.raises(ValueError, match=r"\.gif"):
        CardFormat.from_suffix("gif")
    assert card_url("https://alerts.example/cards/", "CB-1-1", "es-US", CardFormat.jpeg) == (
        "https://alerts.example/cards/CB-1-1/es-US.jpg"
    )


def test_a_language_the_alert_does_not_have_is_refused() -> None:
    with pytest.raises(ValueError, match="no 'de-DE' text; it has en-US"):
        render_card(_version(), "de-DE")


# --- ACTUAL vs EXERCISE --------------------------------------------------------------------------


@pytest.mark.parametrize("card_format", [CardFormat.png, CardFormat.jpeg])
def test_actual_is_red_and_exercise_is_blue_top_and_bottom(card_format: CardFormat) -> None:
    width, height = CARD_SIZE
    top = (0, 0, width, 24)  # the banner above its text
    bottom = (0, height - 10, width, height)
    actual = _image(render_card(_version(), "en-US", card_format))
    exercise = _image(render_card(_version(status=Status.exercise), "en-US", card_format))
    assert _share(actual, top, ACTUAL_RED) > 0.95
    assert _share(actual, bottom, ACTUAL_RED) > 0.95  # the frame
    assert _share(actual, top, EXERCISE_BLUE) == 0
    assert _share(exercise, top, EXERCISE_BLUE) > 0.95
    assert _share(exercise, bottom, EXERCISE_BLUE) > 0.95
    assert _share(exercise, top, ACTUAL_RED) == 0
    sampled = exercise.resize((width // 4, height // 4), Image.Resampling.NEAREST)
    assert _share(sampled, (0, 0, *sampled.size), ACTUAL_RED) == 0  # no red anywhere on a drill


def test_a_drill_is_watermarked_everywhere_and_a_real_alert_never() -> None:
    width, height = CARD_SIZE
    quiet = (MARGIN, height - 400, width - MARGIN, height - 200)  # below the text
    exercise = _image(render_card(_version(status=Status.test), "en-US"))
    actual = _image(render_card(_version(), "en-US"))
    assert _share(exercise, quiet, WATERMARK) > 0.05
    assert _share(actual, quiet, WATERMARK) == 0


@pytest.mark.parametrize("status", [Status.exercise, Status.test])
def test_the_exercise_marking_is_drawn_at_top_and_bottom(status: Status) -> None:
    layout = layout_card(_version(status=status), "en-US")
    marked = [text for text in layout.texts if text.text == EXERCISE_MARKING]
    assert len(marked) == 2
    assert marked[0].y < BANNER_HEIGHT and marked[1].y > layout.footer_top
    headline = next(t.text for t in layout.texts if t.bold and t.y > BANNER_HEIGHT)
    assert not headline.startswith("EXERCISE"), "the marking is in the banner, not repeated"


def test_an_actual_card_never_says_exercise() -> None:
    layout = layout_card(_version(), "en-US")
    assert all("EXERCISE" not in text.text for text in layout.texts)
    assert layout.texts[0].text == "EMERGENCY ALERT"


@pytest.mark.parametrize(
    ("msg_type", "language", "title"),
    [
        (MsgType.alert, "en-US", "EMERGENCY ALERT"),
        (MsgType.update, "en-US", "ALERT UPDATE"),
        (MsgType.cancel, "en-US", "ALERT CANCELLED"),
        (MsgType.alert, "es-US", "ALERTA DE EMERGENCIA"),
        (MsgType.cancel, "fr-CA", "ALERTE ANNULÉE"),
    ],
)
def test_the_banner_says_what_kind_of_message_it_is(
    msg_type: MsgType, language: str, title: str
) -> None:
    version = _version(msg_type=msg_type, languages=("en-US", "es-US", "fr-CA"))
    assert layout_card(version, language).texts[0].text == title


# --- readable at phone size ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"long": True},
        {"status": Status.exercise, "long": True},
        {"languages": ("en-US", "es-US", "fr-CA", "zh-CN")},
    ],
)
def test_every_line_fits_and_is_large_enough(kwargs: dict[str, Any]) -> None:
    version = _version(**kwargs)
    for info in version.content.infos:
        layout = layout_card(version, info.language)
        assert layout.body_bottom <= layout.footer_top
        for text in layout.texts:
            path = layout.bold_font if text.bold else layout.regular_font
            font = cards._font(path, text.size)
            assert text.size >= MIN_TEXT_PX, text.text
            assert text.x + font.getlength(text.text) <= CARD_SIZE[0] - MARGIN + 1, text.text
            assert text.y >= 0 and text.y + text.size <= CARD_SIZE[1], text.text


def test_a_long_alert_keeps_its_headline_and_instruction() -> None:
    version = _version(long=True)
    drawn = " ".join(text.text for text in layout_card(version, "en-US").texts)
    assert "Evacuate Riverside now: levee failure" in drawn
    assert "Leave now for high ground" in drawn
    assert "The levee on the east bank" not in drawn  # the description belongs to the caption


def test_a_wordless_overlong_line_is_broken_not_overflowing() -> None:
    font = ImageFont.load_default(size=40)
    assert isinstance(font, ImageFont.FreeTypeFont)
    lines = cards._wrap(font, "x" * 200, 400, 3)
    assert len(lines) == 3 and lines[-1].endswith("…")
    assert all(font.getlength(line) <= 400 for line in lines)


def test_scripts_without_a_font_point_to_the_caption_instead_of_empty_boxes() -> None:
    layout = layout_card(_version(languages=("en-US", "zh-CN")), "zh-CN")
    for text in layout.texts:
        path = layout.bold_font if text.bold else layout.regular_font
        assert all(cards._draws(path, char) for char in text.text), text.text
    drawn = [text.text for text in layout.texts]
    can_draw_chinese = all(cards._draws(layout.bold_font, char) for char in "立即撤离河滨区")
    if can_draw_chinese:
        assert any("立即撤离河滨区" in text for text in drawn)
    else:
        assert "(This text is in the caption below.)" in drawn
