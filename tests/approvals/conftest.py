"""Fixtures for the approvals tests: the shipped configuration, loaded once."""

import pytest

from approvals.policy import Policy, load_policy
from approvals.screening import ScreeningConfig, load_screening
from approvals.templates import TemplateSet, load_templates
from tests.approvals.factories import POLICY_FILE, SCREENING_FILE, TEMPLATES_DIR


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(POLICY_FILE)


@pytest.fixture(scope="session")
def screening() -> ScreeningConfig:
    return load_screening(SCREENING_FILE)


@pytest.fixture(scope="session")
def templates() -> TemplateSet:
    return load_templates(TEMPLATES_DIR)
