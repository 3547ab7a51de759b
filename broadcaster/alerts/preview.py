"""What each channel will publish for a version: the exact parts and their counts."""

from __future__ import annotations

from pydantic import BaseModel

from broadcaster.targets import Directory
from channels.base import AlertVersion, ChannelError


class PartOut(BaseModel):
    part: int
    parts: int
    text: str
    length: int
    limit: int | None
    counted_by: str
    subject: str | None = None
    media_url: str | None = None
    language: str | None = None


class ChannelPreview(BaseModel):
    channel: str
    target: str | None
    target_mode: str | None
    max_parts: int
    within_limits: bool
    problem: str | None
    parts: list[PartOut]


class PreviewOut(BaseModel):
    alert_id: int
    version_id: int
    content_hash: str
    channels: list[ChannelPreview]


def preview_channels(version: AlertVersion, directory: Directory) -> list[ChannelPreview]:
    """Render the version on every channel it names, with the first target of its mode."""
    previews = []
    for channel in version.content.channels:
        targets = directory.for_alert(channel, version.content.mode)
        if not targets:
            previews.append(
                ChannelPreview(
                    channel=channel,
                    target=None,
                    target_mode=None,
                    max_parts=0,
                    within_limits=False,
                    problem=(
                        f"no {version.content.mode.value} target is configured for channel "
                        f"{channel!r}: nothing would be sent there"
                    ),
                    parts=[],
                )
            )
            continue
        adapter = directory.adapter(targets[0].name)
        limits = adapter.limits
        try:
            posts = adapter.render(version)
        except (ChannelError, ValueError) as error:
            previews.append(
                ChannelPreview(
                    channel=channel,
                    target=targets[0].name,
                    target_mode=targets[0].target.mode.value,
                    max_parts=limits.max_parts,
                    within_limits=False,
                    problem=f"cannot be rendered for {channel}: {error}",
                    parts=[],
                )
            )
            continue
        over = [p for p in posts if p.limit is not None and p.length > p.limit]
        too_many = len(posts) > limits.max_parts
        problem = None
        if over:
            problem = f"part {over[0].part} is {over[0].length} of {over[0].limit} allowed"
        elif too_many:
            problem = f"{len(posts)} parts; {channel} takes at most {limits.max_parts}"
        previews.append(
            ChannelPreview(
                channel=channel,
                target=targets[0].name,
                target_mode=targets[0].target.mode.value,
                max_parts=limits.max_parts,
                within_limits=problem is None,
                problem=problem,
                parts=[
                    PartOut(
                        part=post.part,
                        parts=post.parts,
                        text=post.text,
                        length=post.length,
                        limit=post.limit,
                        counted_by=limits.counted_by.value,
                        subject=post.subject,
                        media_url=post.media_url,
                        language=post.language,
                    )
                    for post in posts
                ],
            )
        )
    return previews
