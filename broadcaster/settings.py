"""Service settings: `config/broadcaster.toml`, overridden by `BROADCASTER_...` variables.

Precedence, highest first: environment (`BROADCASTER_SERVER__PORT=9000`), the config file, the
defaults below. The shipped `config/broadcaster.toml` restates these defaults so an administrator
can read and edit them; a test keeps the two equal.

Secrets never live in a config file. Config only names where a secret comes from (an environment
variable or a file) with a `SecretRef`; `load_settings` resolves every reference at start-up so a
missing secret stops the service with one clear message instead of failing later.
"""

from __future__ import annotations

import contextlib
import os
import secrets as token_source
import tempfile
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

if TYPE_CHECKING:
    from broadcaster.targets import Directory

ENV_PREFIX = "BROADCASTER_"
ENV_NESTED_DELIMITER = "__"
CONFIG_ENV_VAR = "BROADCASTER_CONFIG"
DEFAULT_CONFIG_PATH = Path("config/broadcaster.toml")
# The config/ directory shipped with the source: where default rules and templates live.
SHIPPED_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
SUPPORTED_DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")


class ConfigError(Exception):
    """A configuration problem to fix; the message says where, what, and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Section):
    """Where a secret comes from: exactly one of an environment variable or a file."""

    env: str | None = None
    file: Path | None = None
    # For secrets that only this installation uses (the session signing key), a random value is
    # written to `file` on first start so the embedded default runs with no set-up.
    generate: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError('name exactly one source: env = "VARIABLE" or file = "path"')
        if self.generate and self.file is None:
            raise ValueError('generate = true needs file = "path" to keep the generated secret in')
        return self

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # The address the public and the console reach us at; used in links we publish.
    public_url: str | None = None
    shutdown_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Refuse request bodies above this size with 413 before reading them.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)


class DatabaseSettings(_Section):
    url: str = "sqlite+aiosqlite:///var/broadcaster.db"
    pool_size: int = Field(default=10, ge=1, le=200)
    echo: bool = False

    @model_validator(mode="after")
    def _supported_scheme(self) -> DatabaseSettings:
        scheme = self.url.split("://", 1)[0]
        if scheme not in SUPPORTED_DATABASE_SCHEMES:
            allowed = " or ".join(f"{s}://" for s in SUPPORTED_DATABASE_SCHEMES)
            raise ValueError(f"database URL scheme {scheme!r} is not supported; use {allowed}")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class WorkerSettings(_Section):
    # `broadcaster serve` runs a dispatcher worker inside the web process when true; set false
    # when separate `broadcaster worker` processes do the fan-out.
    in_process: bool = True
    heartbeat_seconds: float = Field(default=5.0, gt=0, le=60)
    # A worker silent for this long is presumed dead and its leased deliveries are claimed again.
    lease_seconds: float = Field(default=30.0, gt=0, le=600)


class AlertSettings(_Section):
    """Relative paths here are relative to the settings file that names them (or, with no
    settings file, to the shipped config/ directory): they are siblings of broadcaster.toml."""

    # CAP <sender>: who the public's systems see the alerts as coming from.
    sender: str = Field(default="alerts@crisis-broadcaster.invalid", pattern=r"^[^\s,<&]+$")
    # CAP identifiers are "<prefix>-<alert>-<version>"; make the prefix unique to this agency.
    identifier_prefix: str = Field(default="CB", pattern=r"^[A-Za-z0-9._-]{1,32}$")
    policy_file: Path = Path("approval-policy.toml")
    screening_file: Path = Path("screening.toml")
    templates_dir: Path = Path("templates")

    def relative_to(self, base: Path) -> AlertSettings:
        return self.model_copy(
            update={
                name: base / getattr(self, name)
                for name in ("policy_file", "screening_file", "templates_dir")
                if not getattr(self, name).is_absolute()
            }
        )


class TriageSettings(_Section):
    """The triage queue of public reports (broadcaster/triage). `rules_file` is relative to the
    settings file, like the alert rules (with no settings file: the shipped config/)."""

    # Lexicon, scoring weights, gazetteer, canned replies and the reply policy.
    rules_file: Path = Path("triage.toml")
    # Reports (with their replies) older than this are deleted, and the purge is audited.
    retention_days: int = Field(default=30, ge=1, le=3650)
    # A high-priority report nobody acknowledged within this time goes to the on-call target.
    escalation_minutes: float = Field(default=10.0, gt=0, le=1440)
    # The configured target (a [[targets]] name) that escalations go to; unset: no escalation.
    escalation_target: str | None = None
    # The phone number or address on that target, for list channels (SMS, email).
    escalation_recipient: str | None = None
    # Public report form: at most this many reports per source address per window.
    form_max_per_window: int = Field(default=5, ge=1, le=10_000)
    form_window_seconds: float = Field(default=600.0, gt=0, le=86_400)
    # Reports waiting to be written when the database is slow; past this, webhooks get 503.
    ingest_queue_size: int = Field(default=20_000, ge=100, le=1_000_000)
    # How often polled channels (Mastodon, Telegram; X and Meta as a fallback) are asked.
    poll_interval_seconds: float = Field(default=30.0, ge=1, le=3600)
    # `serve` writes reports (dedupe, clustering, scoring, the insert) in a process of its own,
    # using a second core; applications built in-process (tests, scripts) write in their own.
    writer_process: bool = True

    def relative_to(self, base: Path) -> TriageSettings:
        if self.rules_file.is_absolute():
            return self
        return self.model_copy(update={"rules_file": base / self.rules_file})


class ChannelDispatchSettings(_Section):
    """How hard the dispatcher may push one target of a channel (each target gets its own)."""

    # Requests in flight at once to one target: a slow platform fills only its own slots.
    concurrency: int = Field(default=4, ge=1, le=1000)
    # Sustained requests per second to one target, shared by every live worker; unset: no
    # limit of ours (the platform's own documented rate still applies, see honour_platform_rates).
    rate_per_second: float | None = Field(default=None, gt=0, le=100_000)
    # Requests allowed at once after a quiet spell, above the sustained rate.
    burst: int = Field(default=10, ge=1, le=100_000)


# Per-channel defaults; a [dispatch.channels.NAME] table overrides the keys it names.
_CHANNEL_DISPATCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "x": {"concurrency": 4, "burst": 100},  # 100 posts per 15 minutes; a thread is one burst
    "facebook": {"concurrency": 4},
    "instagram": {"concurrency": 2},
    "mastodon": {"concurrency": 4},
    "telegram": {"concurrency": 4, "burst": 20},
    "sms": {"concurrency": 64, "burst": 100},  # Twilio queues; ~100 requests in flight per account
    "email": {"concurrency": 8},
    "webhook": {"concurrency": 8},
    "cap": {"concurrency": 4},
}


class DispatchSettings(_Section):
    """The fan-out dispatcher: retries, backoff, breakers, budgets and per-channel limits."""

    # Tries per delivery (claims count, reclaims after a crash too); then it is dead-lettered.
    max_attempts: int = Field(default=8, ge=1, le=100)
    # Full-jitter exponential backoff: wait uniform(0, min(cap, base * 2^(try-1))); the
    # platform's own wait (Retry-After, a reset time) wins when it is later.
    backoff_base_seconds: float = Field(default=1.0, gt=0, le=3600)
    backoff_cap_seconds: float = Field(default=300.0, gt=0, le=86_400)
    # One request to a platform; past it the outcome is ambiguous and is reconciled.
    request_timeout_seconds: float = Field(default=15.0, gt=0, le=600)
    # Consecutive failures that open a target's circuit breaker, and how long it stays open
    # before one trial request (half-open) may close it again.
    breaker_failure_threshold: int = Field(default=5, ge=1, le=1000)
    breaker_open_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Retries per first attempt a target may spend (0.2: one retry per five new deliveries),
    # plus a floor per second, so an outage does not multiply the traffic we send it.
    retry_budget_ratio: float = Field(default=0.2, ge=0, le=10)
    retry_budget_min_per_second: float = Field(default=1.0, ge=0, le=10_000)
    # How often an idle worker looks for due deliveries (it is also woken at once on release).
    poll_interval_seconds: float = Field(default=0.5, gt=0, le=60)
    # Deliveries claimed (and later recorded) per statement.
    claim_batch: int = Field(default=500, ge=1, le=10_000)
    # Also hold each target to its platform's documented rate (channels' Limits); turn off only
    # against the local emulators, which enforce none.
    honour_platform_rates: bool = True
    channels: dict[str, ChannelDispatchSettings] = Field(
        default_factory=lambda: {
            name: ChannelDispatchSettings(**values)
            for name, values in _CHANNEL_DISPATCH_DEFAULTS.items()
        }
    )

    @model_validator(mode="before")
    @classmethod
    def _merge_channel_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("channels"), dict):
            return data
        merged: dict[str, Any] = {name: dict(v) for name, v in _CHANNEL_DISPATCH_DEFAULTS.items()}
        for name, values in data["channels"].items():
            given = values.model_dump() if isinstance(values, BaseModel) else values
            merged[name] = {**merged.get(name, {}), **(given if isinstance(given, dict) else {})}
        return {**data, "channels": merged}

    @model_validator(mode="after")
    def _known_channels_and_backoff(self) -> DispatchSettings:
        from channels.registry import CHANNELS  # channels never import the service

        unknown = sorted(set(self.channels) - set(CHANNELS))
        if unknown:
            raise ValueError(
                f"dispatch.channels names unknown channel(s) {', '.join(unknown)}; "
                f"channels: {', '.join(sorted(CHANNELS))}"
            )
        if self.backoff_cap_seconds < self.backoff_base_seconds:
            raise ValueError("backoff_cap_seconds must be at least backoff_base_seconds")
        return self

    def for_channel(self, name: str) -> ChannelDispatchSettings:
        return self.channels.get(name) or ChannelDispatchSettings()


class ConsoleSettings(_Section):
    """The web console's sign-in (broadcaster/console, broadcaster/auth/sessions.py)."""

    # A session nobody used for this long ends; the next click asks to sign in again.
    idle_timeout_minutes: float = Field(default=30.0, gt=0, le=24 * 60)
    # However busy, a session ends this long after sign-in (a shift), so a stolen one dies.
    absolute_timeout_hours: float = Field(default=14.0, gt=0, le=7 * 24)
    # Failed sign-ins slow further tries (per account and per source address) by a delay that
    # doubles with each failure up to this cap; nobody is ever locked out for longer.
    throttle_cap_seconds: float = Field(default=30.0, ge=1, le=3600)


class SecretsSettings(_Section):
    session_key: SecretRef = SecretRef(file=Path("var/secrets/session_key"), generate=True)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
    )

    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    logging: LoggingSettings = LoggingSettings()
    worker: WorkerSettings = WorkerSettings()
    alerts: AlertSettings = AlertSettings()
    triage: TriageSettings = TriageSettings()
    dispatch: DispatchSettings = DispatchSettings()
    console: ConsoleSettings = ConsoleSettings()
    secrets: SecretsSettings = SecretsSettings()
    # Channel targets ([[targets]] tables), checked against each adapter by broadcaster.targets.
    targets: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments; the environment must win over them.
        return env_settings, init_settings


class LoadedSettings:
    """Validated settings, where they came from, the resolved secrets and channel targets."""

    def __init__(
        self,
        settings: Settings,
        source: Path | None,
        secrets: dict[str, SecretStr],
        directory: Directory | None = None,
    ):
        from broadcaster.targets import Directory  # the targets module builds on this one

        self.settings = settings
        self.source = source
        self._secrets = secrets
        self.directory = directory if directory is not None else Directory()

    def secret(self, name: str) -> SecretStr:
        return self._secrets[name]


def config_path_from(explicit: Path | None) -> Path | None:
    """The file to read: --config, else $BROADCASTER_CONFIG, else ./config/broadcaster.toml."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_ENV_VAR)
    if from_env:
        return Path(from_env)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def load_settings(explicit: Path | None = None) -> LoadedSettings:
    """Read, validate and resolve; raise ConfigError with a message fit to show a person."""
    path = config_path_from(explicit)
    data = _read_toml(path) if path is not None else {}
    try:
        settings = Settings(**data)
    except ValidationError as error:
        raise ConfigError(_describe_validation_error(error, path)) from None
    # Absolute, so the rules files stay where the settings file is whatever reads them later
    # (a relative base would be joined to the shipped config/ by the triage rules loader).
    base = path.resolve().parent if path is not None else SHIPPED_CONFIG_DIR
    settings = settings.model_copy(
        update={
            "alerts": settings.alerts.relative_to(base),
            "triage": settings.triage.relative_to(base),
        }
    )
    where = str(path) if path else "the built-in defaults"
    resolved = {
        name: resolve_secret(ref, f"{where}: secrets.{name}") for name, ref in settings.secrets
    }
    from broadcaster.targets import build_directory  # the targets module builds on this one

    directory = build_directory(settings.targets, where)
    return LoadedSettings(settings, path, resolved, directory)


def resolve_secret(ref: SecretRef, where: str) -> SecretStr:
    """The secret's value; ConfigError naming the reference (never the value) when it is missing."""
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if not value:
            raise ConfigError(
                f"{where}: environment variable {ref.env} is not set or empty. "
                f'Set it, or point the secret at a file with file = "path".'
            )
        return SecretStr(value)
    assert ref.file is not None  # guaranteed by SecretRef's validator
    if not ref.file.exists() and ref.generate:
        _write_generated_secret(ref.file)
    try:
        value = ref.file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"{where}: secret file {ref.file} does not exist. Create it (mode 0600) or set "
            f"generate = true for a secret this installation may invent itself."
        ) from None
    except OSError as error:
        raise ConfigError(
            f"{where}: cannot read secret file {ref.file}: {error.strerror}"
        ) from None
    if not value:
        raise ConfigError(f"{where}: secret file {ref.file} is empty.")
    return SecretStr(value)


def _write_generated_secret(path: Path) -> None:
    """Invent the secret, unless another process starting at the same moment (a `serve` and
    its workers) already has: each writes its own file first (mode 0600, mkstemp's), then links
    it into place, which never overwrites. The first link stands, whole, and every process then
    reads that one; a loser does not fail to start."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(token_source.token_urlsafe(32))
        try:
            os.link(scratch, path)
        except FileExistsError:
            pass  # another process's secret stands
        except OSError:
            # A filesystem without hard links (FAT, some network mounts): create it in place.
            with contextlib.suppress(FileExistsError):
                _create_exclusively(path, Path(scratch).read_text(encoding="utf-8"))
    finally:
        os.unlink(scratch)


def _create_exclusively(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist.") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}") from None


def _describe_validation_error(error: ValidationError, path: Path | None) -> str:
    lines = [_describe_one(detail, path) for detail in error.errors(include_url=False)]
    heading = "invalid configuration" if len(lines) == 1 else f"{len(lines)} configuration problems"
    return heading + ":\n" + "\n".join(f"  - {line}" for line in lines)


def _describe_one(detail: Any, path: Path | None) -> str:
    loc = [str(part) for part in detail["loc"]]
    dotted = ".".join(loc)
    env_name = ENV_PREFIX + ENV_NESTED_DELIMITER.join(loc).upper()
    origin = (
        f"environment variable {env_name}"
        if env_name in os.environ
        else (str(path) if path else "the built-in defaults")
    )
    if detail["type"] == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc[:-1])) or "none"
        return f"{origin}: unknown key {dotted!r}. Allowed keys here: {allowed}."
    bad_value = detail.get("input")
    shown = "" if isinstance(bad_value, dict) else f" = {bad_value!r}"
    return f"{origin}: {dotted}{shown}: {detail['msg']}."


def _allowed_keys(parent: list[str]) -> list[str]:
    model: type[BaseModel] = Settings
    for part in parent:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)
