"""Alerts in the service: loading the rules, storing versions, and every action on them."""
