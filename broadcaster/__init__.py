"""Crisis Broadcaster: approved emergency alerts to every public channel, and replies back."""

__version__ = "0.1.0"
