"""Alert templates: TOML files under config/templates/live/ and config/templates/exercise/.

A duty officer starts almost every alert from a template, so templates are where a drill and a
live alert sit side by side (Hawaii, 2018). Loading therefore refuses anything that could let one
pass for the other: a template's `mode` must match its directory; exercise names start with
"exercise-" and live names never mention exercise, drill or test; an exercise template has status
Exercise and the exercise marking in every headline, title and paired text; a live template has
status Actual and no marking anywhere.

Each template carries its paired correction (an Update) and cancel texts, written in advance so a
mistaken alert can be corrected in seconds. Paired headlines are fixed text, so a Cancel can never
fail on length in an emergency; paired descriptions may only use {event}, {area} and {headline},
which are taken from the original alert, never typed in under pressure.
"""

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from approvals._template_file import (
    PAIRED_PLACEHOLDERS,
    PLACEHOLDER,
    PairedText,
    Template,
    read_template,
)
from approvals.alert import AlertContent, Info, Mode, MsgType
from approvals.errors import MissingValue, TemplateError, TemplateFileError, UnknownTemplate
from approvals.screening import ScreeningConfig, blocking, screen

__all__ = [
    "PAIRED_PLACEHOLDERS",
    "PairedText",
    "Template",
    "TemplateSet",
    "load_templates",
]

# Only for checking paired texts at load time; never sent anywhere.
_CHECK_REFERENCE: Final = "templates.invalid,load-check,2000-01-01T00:00:00+00:00"


def _fill(text: str, values: Mapping[str, str]) -> str:
    # One pass: a value that itself contains "{x}" is left as typed.
    return PLACEHOLDER.sub(lambda found: values[found.group(1)], text)


def _fill_content(content: Mapping[str, object], values: Mapping[str, str]) -> dict[str, object]:
    return {key: _fill_all(item, values) for key, item in content.items()}


def _fill_all(value: object, values: Mapping[str, str]) -> object:
    if isinstance(value, str):
        return _fill(value, values)
    if isinstance(value, dict):
        return {key: _fill_all(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill_all(item, values) for item in value]
    return value


def _field_of(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    path = ""
    for part in first["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "content", first["msg"].removeprefix("Value error, ")


def _area_text(info: Info) -> str:
    return "; ".join(area.description for area in info.areas) or "the area in the earlier alert"


@dataclass(frozen=True)
class TemplateSet:
    """Every loaded template, by name."""

    templates: Mapping[str, Template]
    root: Path

    def names(self, mode: Mode | None = None) -> list[str]:
        return sorted(name for name, t in self.templates.items() if mode in (None, t.mode))

    def get(self, name: str) -> Template:
        template = self.templates.get(name)
        if template is None:
            close = difflib.get_close_matches(name, self.templates, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UnknownTemplate(
                name,
                f"no template named {name!r} in {self.root}; {hint}live templates: "
                f"{', '.join(self.names(Mode.live))}; exercise templates: "
                f"{', '.join(self.names(Mode.exercise))}",
            )
        return template

    def render(
        self,
        name: str,
        values: Mapping[str, str],
        channels: Sequence[str] | None = None,
    ) -> AlertContent:
        """A new Alert from a template, its placeholders filled with `values`."""
        template = self.get(name)
        for placeholder, label in template.placeholders.items():
            value = values.get(placeholder)
            if value is None or not value.strip():
                raise MissingValue(
                    name,
                    placeholder,
                    f"template '{name}' needs a value for '{placeholder}' ({label}); fill it in",
                )
        unknown = sorted(set(values) - set(template.placeholders))
        if unknown:
            raise TemplateError(
                name,
                unknown[0],
                f"template '{name}' has no placeholder '{unknown[0]}'; its placeholders are "
                f"{', '.join(template.placeholders)}",
            )
        data = _fill_content(template.content, values)
        data["template"] = name
        if channels is not None:
            data["channels"] = list(channels)
        try:
            return AlertContent.model_validate(data)
        except ValidationError as error:
            field, message = _field_of(error)
            raise TemplateError(
                name, field, f"template '{name}' filled in gives an invalid {field}: {message}"
            ) from None

    def _paired(self, original: AlertContent, kind: str) -> tuple[Template, dict[str, PairedText]]:
        if original.template is None:
            raise TemplateError(
                "",
                "template",
                f"this alert was not made from a template, so it has no pre-written {kind} "
                f"text; write the {kind} by hand",
            )
        template = self.get(original.template)
        if template.mode is not original.mode:
            raise TemplateError(
                template.name,
                "template",
                f"the alert is {original.mode} but its template '{template.name}' is "
                f"{template.mode}; write the {kind} by hand",
            )
        texts = template.correction if kind == "correction" else template.cancel
        return template, {text.language: text for text in texts}

    def _replacement(
        self,
        original: AlertContent,
        kind: MsgType,
        references: Sequence[str],
        channels: Sequence[str] | None,
    ) -> AlertContent:
        label = "cancel" if kind is MsgType.cancel else "correction"
        template, texts = self._paired(original, label)
        infos = []
        for info in original.infos:
            text = texts.get(info.language)
            if text is None:
                raise TemplateError(
                    template.name,
                    label,
                    f"template '{template.name}' has no {label} text in {info.language}; "
                    f"add a [[{label}]] entry with language = {info.language!r}",
                )
            derived = {"event": info.event, "area": _area_text(info), "headline": info.headline}
            fields = info.model_dump()
            fields["headline"] = text.headline
            description = _fill(text.description, derived)
            if kind is MsgType.cancel:
                fields["description"] = description
                fields["instruction"] = text.instruction
                fields["expires"] = None  # the Cancel itself never lapses before it is sent
            else:
                # A correction keeps the original text after the notice, for the author to fix.
                original_text = f"\n\n{info.description}" if info.description else ""
                fields["description"] = description + original_text
                if text.instruction is not None:
                    fields["instruction"] = _fill(text.instruction, derived)
            infos.append(fields)
        data = {
            "status": original.status,
            "msg_type": kind,
            "scope": original.scope,
            "references": list(references),
            "infos": infos,
            "channels": list(channels) if channels is not None else list(original.channels),
            "template": template.name,
        }
        try:
            return AlertContent.model_validate(data)
        except ValidationError as error:
            field, message = _field_of(error)
            raise TemplateError(
                template.name, field, f"the {label} of template '{template.name}': {message}"
            ) from None

    def correction_for(
        self,
        original: AlertContent,
        references: Sequence[str],
        channels: Sequence[str] | None = None,
    ) -> AlertContent:
        """An Update carrying the template's correction notice, for the author to complete."""
        return self._replacement(original, MsgType.update, references, channels)

    def cancel_for(
        self,
        original: AlertContent,
        references: Sequence[str],
        channels: Sequence[str] | None = None,
    ) -> AlertContent:
        """A Cancel with the template's pre-written cancel text, ready to submit as it is."""
        return self._replacement(original, MsgType.cancel, references, channels)


def load_templates(root: Path | str) -> TemplateSet:
    """Load config/templates/; TemplateFileError names the file, field and what to change."""
    root = Path(root)
    if not root.is_dir():
        raise TemplateFileError(root, "templates directory not found")
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and entry.name not in (Mode.live, Mode.exercise):
            raise TemplateFileError(
                entry, "unexpected directory; templates live in live/ and exercise/ only"
            )
    templates: dict[str, Template] = {}
    for mode in (Mode.live, Mode.exercise):
        directory = root / mode.value
        if not directory.is_dir():
            raise TemplateFileError(directory, f"missing: {mode} templates belong in {directory}")
        for path in sorted(directory.iterdir()):
            if path.suffix == ".md":
                continue  # notes for administrators
            if path.suffix != ".toml" or not path.is_file():
                raise TemplateFileError(path, "unexpected file; templates are *.toml files")
            template = read_template(path, mode)
            _check_sample(template)
            templates[template.name] = template
    loaded = TemplateSet(templates=templates, root=root)
    for template in templates.values():
        _check_paired_texts(loaded, template)
    return loaded


def _check_sample(template: Template) -> None:
    """Render the template with sample values and screen it like a real alert."""
    path, name = template.path, template.name
    sample = TemplateSet({name: template}, path.parent)
    try:
        rendered = sample.render(name, {key: f"[{key}]" for key in template.placeholders})
    except TemplateError as error:
        raise TemplateFileError(path, f"content.{error.field}: {error.message}") from None
    problems = blocking(screen(rendered, ScreeningConfig()))
    if problems:
        raise TemplateFileError(path, f"content.{problems[0].field}: {problems[0].message}")


def _check_paired_texts(templates: TemplateSet, template: Template) -> None:
    """Build the correction and cancel of a sample alert and screen them like a real one."""
    sample = templates.render(template.name, {key: f"[{key}]" for key in template.placeholders})
    for kind, build in (("correction", templates.correction_for), ("cancel", templates.cancel_for)):
        try:
            paired = build(sample, [_CHECK_REFERENCE])
        except TemplateError as error:
            raise TemplateFileError(template.path, f"{kind}: {error.message}") from None
        # The same wording rules as a real alert: marking in every exercise headline, never in a
        # live one, and no exercise text that claims to be real.
        problems = blocking(screen(paired, ScreeningConfig()))
        if problems:
            where = problems[0].field.replace("infos[", f"{kind}[")
            raise TemplateFileError(template.path, f"{where}: {problems[0].message}")
