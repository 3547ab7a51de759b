"""One report shape from every source: platform messages and the public form.

Authors are kept as a pseudonym, a keyed hash of (source, the platform's author id), so a
reporter's history can be followed without storing who they are on the platform, and the key
never leaves this process. The display name is kept for the responder (and redacted from
exports); the contact (an SMS sender's number, or what someone typed on the form) only where a
reply needs it.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import SecretStr

from broadcaster.triage.rules import TriageRules
from broadcaster.triage.text import Analysis, content_words, coordinates_in
from channels.base import InboundMessage

__all__ = ["MAX_TEXT", "NewReport", "Normaliser", "pseudonym_key"]

MAX_TEXT = 10_000  # characters kept of one message; platforms' own limits are far lower
FORM_SOURCE = "form"
_MAX_MEDIA = 10


@dataclass(frozen=True)
class NewReport:
    """A report as it arrives, before it is stored, clustered and scored."""

    source: str
    external_id: str
    text: str
    received_at: datetime
    target: str | None = None
    author_name: str | None = None
    author_pseudonym: str | None = None
    contact: str | None = None
    language: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    place: str | None = None
    media: tuple[str, ...] = ()
    in_reply_to: str | None = None
    url: str | None = None
    # From the lexicon, computed once here: category -> entries found; the words compared
    # when clustering.
    matches: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    words: frozenset[str] = frozenset()

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.external_id)


def pseudonym_key(session_key: SecretStr) -> bytes:
    """The pseudonym key, derived from the installation's session key so there is no new
    secret to manage. Rotating the session key starts new pseudonyms (history restarts)."""
    return hmac.new(
        session_key.get_secret_value().encode(), b"crisis-broadcaster/triage/pseudonym/v1", "sha256"
    ).digest()


class Normaliser:
    def __init__(self, rules: TriageRules, key: bytes) -> None:
        self.rules = rules
        self._key = key
        self._stopwords = rules.lexicon.all_stopwords

    def pseudonym(self, source: str, author_id: str | None) -> str | None:
        if not author_id:
            return None
        # hmac.digest: the one-shot form, several times cheaper than an HMAC object per report.
        digest = hmac.digest(self._key, f"{source}\x00{author_id}".encode(), "sha256")
        return digest.hex()[:32]

    def report(
        self,
        *,
        source: str,
        external_id: str,
        text: str,
        received_at: datetime,
        target: str | None = None,
        author_id: str | None = None,
        author_name: str | None = None,
        contact: str | None = None,
        language_hint: str | None = None,
        latitude: float | None = None,
        longitude: float | None = None,
        place: str | None = None,
        media: Sequence[str] = (),
        in_reply_to: str | None = None,
        url: str | None = None,
    ) -> NewReport:
        # Cleaned first: one value the database cannot store would fail its whole batch at
        # every retry, holding up every report queued behind it.
        text = storable(text).strip()[:MAX_TEXT]
        external_id = storable(external_id)
        author_id = storable(author_id) if author_id else author_id
        author_name = storable(author_name) if author_name else author_name
        contact = storable(contact) if contact else contact
        place = storable(place) if place else place
        media = [storable(link) for link in media]
        in_reply_to = storable(in_reply_to) if in_reply_to else in_reply_to
        url = storable(url) if url else url
        analysis: Analysis = self.rules.lexicon.analyse(text, language_hint)
        if not _a_place_on_earth(latitude, longitude):
            latitude = longitude = None
            found_place = (
                self.rules.gazetteer.lookup(place)
                if place
                else self.rules.gazetteer.find_in(analysis.tokens)
            )
            pasted = coordinates_in(text)
            if pasted is not None:
                latitude, longitude = pasted
            elif found_place is not None:
                latitude, longitude = found_place.latitude, found_place.longitude
            if found_place is not None and place is None:
                place = found_place.name
        return NewReport(
            source=source,
            external_id=external_id[:255],
            text=text,
            received_at=received_at,
            target=target,
            author_name=author_name[:200] if author_name else None,
            author_pseudonym=self.pseudonym(source, author_id),
            contact=contact[:255] if contact else None,
            language=analysis.language,
            latitude=latitude,
            longitude=longitude,
            place=place[:255] if place else None,
            media=tuple(media)[:_MAX_MEDIA],
            in_reply_to=in_reply_to[:255] if in_reply_to else None,
            url=url,
            matches=analysis.matches,
            words=self._words(analysis, place),
        )

    def words_of(self, text: str, place: str | None) -> frozenset[str]:
        """The clustering words of a stored report (rebuilding the index at start)."""
        return self._words(self.rules.lexicon.analyse(text), place)

    def _words(self, analysis: Analysis, place: str | None) -> frozenset[str]:
        """Content words, plus a word for the place and for each category found: "stuck on our
        roof on Elm Street" and "trapped on the roof, 12 Elm St" share few words but the same
        place and the same kind of trouble."""
        extra = {f"#{category}" for category in analysis.matches}
        if place:
            extra.add("@" + place.casefold())
        return content_words(analysis.tokens, self._stopwords) | extra

    def from_message(self, message: InboundMessage, target: str) -> NewReport:
        """A platform message that came in on `target`."""
        raw: Mapping[str, object] = message.raw
        hint = raw.get("language")
        # SMS has no other way back than the sender's number: it is the contact.
        contact = message.author_id if message.source == "sms" else None
        return self.report(
            source=message.source,
            external_id=message.external_id,
            text=message.text,
            received_at=message.received_at,
            target=target,
            author_id=message.author_id,
            author_name=message.author_name,
            contact=contact,
            language_hint=hint if isinstance(hint, str) else None,
            latitude=message.latitude,
            longitude=message.longitude,
            media=message.media_urls,
            in_reply_to=message.in_reply_to,
            url=message.url,
        )


def storable(value: str) -> str:
    """`value` without what neither database stores: NUL (PostgreSQL's text has none) and lone
    surrogates (not UTF-8; a JSON "\\ud83d" cut from its pair reads as one), replaced by "?"."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _a_place_on_earth(latitude: float | None, longitude: float | None) -> bool:
    # A platform's JSON may carry NaN or Infinity (Python's json reads them): that is no
    # location, and it could not be stored (PostgreSQL's JSON has no NaN; the batch would be
    # refused again at every retry, holding up every report behind it).
    return (
        latitude is not None
        and longitude is not None
        and math.isfinite(latitude)
        and math.isfinite(longitude)
    )
