"""The approval policy, screening rules and templates, loaded and checked once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from approvals.errors import ConfigError as ApprovalsConfigError
from approvals.policy import Policy, load_policy
from approvals.screening import ScreeningConfig, load_screening
from approvals.templates import TemplateSet, load_templates
from broadcaster.settings import AlertSettings, ConfigError


@dataclass(frozen=True)
class AlertRules:
    policy: Policy
    screening: ScreeningConfig
    templates: TemplateSet
    sender: str
    identifier_prefix: str


def load_alert_rules(settings: AlertSettings) -> AlertRules:
    """Load every rules file; a refused file stops start-up with the loader's own message."""
    try:
        return AlertRules(
            policy=load_policy(settings.policy_file),
            screening=load_screening(settings.screening_file),
            templates=load_templates(settings.templates_dir),
            sender=settings.sender,
            identifier_prefix=settings.identifier_prefix,
        )
    except ApprovalsConfigError as error:
        raise ConfigError(str(error)) from None
    except FileNotFoundError as error:
        raise ConfigError(
            f"alerts: {error.filename} does not exist; check alerts.policy_file, "
            "alerts.screening_file and alerts.templates_dir"
        ) from None
