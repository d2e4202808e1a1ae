"""The typed settings schema: every key mailtriage reads, with its default.

The commented starter file is ``config/defaults.toml``; ``config.loader`` reads a
TOML file, overlays ``MAILTRIAGE_<SECTION>_<KEY>`` environment variables and
validates the result against :class:`Settings`.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

DEFAULT_CATEGORIES = (
    "network",
    "hardware",
    "software",
    "access",
    "email",
    "printing",
    "security",
    "general",
)
PRIORITIES = ("critical", "high", "medium", "low")
#: The contract's ticket statuses, in workflow order (``daemon.tickets`` is their home in
#: the daemon; they are defined here because the status page may import only config).
STATUSES = (
    "new",
    "awaiting_approval",
    "rejected",
    "assigned",
    "in_progress",
    "waiting",
    "resolved",
    "closed",
)
CLOSED_STATUSES = ("resolved", "closed", "rejected")
OPEN_STATUSES = tuple(s for s in STATUSES if s not in CLOSED_STATUSES)


def needs_secrets(info: ValidationInfo) -> bool:
    """Whether credentials must be present (not for read-only commands: tickets, web)."""
    return not (info.context or {}).get("secrets_optional", False)


class _Section(BaseModel):
    """Base for every section: unknown keys are errors, so typos are caught."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatabaseSettings(_Section):
    """Where tickets, the ledger and the outbox live."""

    url: str = "sqlite:///var/mailtriage.db"
    echo: bool = False
    # SQLite: how long one statement waits for another process's write lock.
    busy_timeout_seconds: float = Field(default=10, gt=0)
    # run --once: how long to ride out a database outage before giving up (exit 1).
    outage_patience_seconds: float = Field(default=300, ge=0)


class OAuth2Settings(_Section):
    """App-only (client credentials) OAuth2 for Microsoft 365 via msal."""

    tenant_id: str
    client_id: str
    client_secret: SecretStr | None = None
    certificate_path: str | None = None
    certificate_thumbprint: str | None = None
    authority_host: str = "https://login.microsoftonline.com"
    scope: str | None = None

    @model_validator(mode="after")
    def _one_credential(self, info: ValidationInfo) -> OAuth2Settings:
        if needs_secrets(info) and not self.client_secret and not self.certificate_path:
            raise ValueError("needs client_secret or certificate_path")
        return self


class MailboxSettings(_Section):
    """The support mailbox that is read."""

    backend: Literal["maildir", "imap", "graph", "ews"] = "maildir"
    path: str = "var/mail/inbox"
    support_address: str = "support@example.com"
    # imap / ews / graph
    host: str | None = None
    port: int | None = None
    ssl: bool = True
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    oauth2: OAuth2Settings | None = None
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    quarantine_folder: str = "Quarantine"
    idle: bool = True
    poll_seconds: float = Field(default=30.0, gt=0)
    # graph: the mailbox user (UPN or id) and the API base (overridable for tests)
    user: str | None = None
    graph_url: str = "https://graph.microsoft.com/v1.0"
    # ews: on-premises Exchange
    ews_url: str | None = None
    verify_tls: bool = True

    @model_validator(mode="after")
    def _backend_needs(self, info: ValidationInfo) -> MailboxSettings:
        if self.backend == "imap" and not self.host:
            raise ValueError("host: required when backend = 'imap'")
        if needs_secrets(info) and self.backend == "imap" and not (self.password or self.oauth2):
            raise ValueError("password: backend 'imap' needs password or [mailbox.oauth2]")
        if self.backend == "graph" and not self.oauth2:
            raise ValueError("oauth2: backend 'graph' needs [mailbox.oauth2]")
        if self.backend == "ews" and not (self.ews_url or self.host):
            raise ValueError("ews_url: backend 'ews' needs ews_url or host")
        return self


class OutboundSettings(_Section):
    """How outgoing mail leaves."""

    transport: Literal["maildir", "smtp", "graph", "ews"] = "maildir"
    path: str = "var/mail/sent"
    from_address: str = "support@example.com"
    from_name: str = "IT Support"
    reply_to: str | None = None
    host: str | None = None
    port: int | None = None
    ssl: bool = False
    starttls: bool = True
    username: str | None = None
    password: SecretStr | None = None
    oauth2: OAuth2Settings | None = None  # graph/ews/smtp: falls back to [mailbox.oauth2]
    user: str | None = None  # graph: the sending mailbox; falls back to mailbox.user
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ews_url: str | None = None  # ews: falls back to mailbox.ews_url (and its credentials)
    verify_tls: bool = True
    timeout_seconds: float = Field(default=30.0, gt=0)
    rate_per_minute: int = Field(default=30, ge=1)
    max_attempts: int = Field(default=8, ge=1)

    @model_validator(mode="after")
    def _transport_needs(self) -> OutboundSettings:
        if self.transport == "smtp" and not self.host:
            raise ValueError("host: required when transport = 'smtp'")
        return self


class WebSettings(_Section):
    """The read-only status page."""

    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=0, le=65535)
    enabled: bool = True


class TeamSettings(_Section):
    """A support team and its members (addresses)."""

    name: str
    email: str | None = None
    members: list[str] = Field(default_factory=list)
    unavailable: list[str] = Field(default_factory=list)


class ApprovalStepSettings(_Section):
    """One step of a multi-step approval: its approvers and how they decide."""

    approvers: list[str] = Field(min_length=1)
    approval: Literal["all", "any"] = "all"


class CategorySettings(_Section):
    """A category of the taxonomy: its team and approval policy."""

    name: str
    team: str
    description: str = ""
    keywords: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)
    approval: Literal["all", "any", "sequential"] = "all"
    # Steps one after another, each with its own approvers and rule (instead of approvers).
    approval_steps: list[ApprovalStepSettings] = Field(default_factory=list)
    min_priority: Literal["critical", "high", "medium", "low"] | None = None
    # SLA targets of this category, instead of the [sla] ones of the ticket's priority.
    sla_resolution_hours: float | None = Field(default=None, gt=0)
    sla_first_response_hours: float | None = Field(default=None, gt=0)
    sla_next_update_hours: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_approval_policy(self) -> CategorySettings:
        if self.approvers and self.approval_steps:
            raise ValueError("approval_steps: give either approvers or approval_steps, not both")
        return self

    @property
    def needs_approval(self) -> bool:
        """True if tickets of this category wait for approval."""
        return bool(self.approvers or self.approval_steps)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def hours_span(text: str) -> tuple[int, int]:
    """``"08:00-18:00"`` as minutes of the day ``(480, 1080)``; ``"24:00"`` ends a day."""
    m = _HOURS.match(text.strip())
    if not m:
        raise ValueError(f"expected HH:MM-HH:MM, got {text!r}")
    start, end = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
    if not start < end <= 24 * 60:
        raise ValueError(f"the end must come after the start (at most 24:00), got {text!r}")
    return start, end


class SlaCalendarSettings(_Section):
    """When the SLA clocks run: working hours per weekday in a time zone, minus holidays.

    No ``hours`` means round the clock (24x7), the behaviour before calendars existed.
    """

    timezone: str = "UTC"
    hours: dict[Weekday, str] = Field(default_factory=dict)  # a day left out is closed
    country: str | None = None  # holidays of the `holidays` package, e.g. "DE"
    subdivision: str | None = None  # e.g. "BY"
    extra_holidays: list[date] = Field(default_factory=list)
    critical_24x7: bool = False  # critical tickets run round the clock anyway

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("hours")
    @classmethod
    def _valid_hours(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            hours_span(text)
        return value


class SlaEscalationStep(_Section):
    """A rung of the escalation ladder above level 1: who is told, how long after the breach."""

    after_minutes: float = Field(ge=0)  # business minutes after the breach
    to: list[str] = Field(min_length=1)


class SlaSettings(_Section):
    """Targets per priority (resolution, first response, next update), warnings, the ladder."""

    # Resolution targets, business hours (the contract's sla_due_at).
    critical_hours: float = Field(default=4, gt=0)
    high_hours: float = Field(default=8, gt=0)
    medium_hours: float = Field(default=24, gt=0)
    low_hours: float = Field(default=72, gt=0)
    # First response targets, business minutes; unset: no first-response clock.
    first_response_critical_minutes: float | None = Field(default=None, gt=0)
    first_response_high_minutes: float | None = Field(default=None, gt=0)
    first_response_medium_minutes: float | None = Field(default=None, gt=0)
    first_response_low_minutes: float | None = Field(default=None, gt=0)
    next_update_hours: float | None = Field(default=None, gt=0)  # unset: no next-update clock
    remind_at_fraction: float = Field(default=0.75, gt=0, lt=1)
    warn_before_minutes: float | None = Field(default=None, gt=0)  # instead of the fraction
    raise_priority_on_breach: bool = False
    always_cc: list[str] = Field(default_factory=list)  # told at every escalation level
    ask_explanation: bool = True  # a breach asks the assignee why (#reason TEXT)
    calendar: SlaCalendarSettings = Field(default_factory=SlaCalendarSettings)
    escalation: list[SlaEscalationStep] = Field(default_factory=list)  # levels 2, 3, ...
    check_interval_seconds: float = Field(default=60, gt=0)

    def hours_for(self, priority: str) -> float:
        """Return the resolution target in hours for ``priority``."""
        return float(getattr(self, f"{priority}_hours"))

    def first_response_minutes_for(self, priority: str) -> float | None:
        """Return the first response target in minutes for ``priority``, or None."""
        return getattr(self, f"first_response_{priority}_minutes", None)


class ApprovalSettings(_Section):
    """Reply-to-approve behaviour."""

    token_ttl_hours: float = Field(default=72, gt=0)
    remind_after_hours: float = Field(default=24, gt=0)
    on_expiry: Literal["reject", "escalate"] = "reject"
    plus_address: bool = False
    # None: on for a Microsoft 365 mailbox (Graph, or IMAP/EWS at outlook.office365.com)
    trust_authentication_results: bool | None = None
    authserv_id: str | None = None
    allow_delegates: bool = False
    check_interval_seconds: float = Field(default=300, gt=0)  # reminders and expiry


class TicketSettings(_Section):
    """Working a ticket by e-mail: agents' reply tokens, reopening, closing."""

    # A requester's reply to a resolved ticket within this many days reopens it;
    # later it opens a new ticket linked to the old one.
    reopen_days: float = Field(default=7, ge=0)
    # resolved becomes closed after this many days without a reply (0 = never).
    auto_close_days: float = Field(default=7, ge=0)
    # How long the reply token of a mail sent to an agent stays good.
    token_ttl_days: float = Field(default=30, gt=0)
    # Command confirmations per agent and ticket per hour (like approval help mail).
    confirmations_per_hour: int = Field(default=6, ge=0)
    check_interval_seconds: float = Field(default=300, gt=0)  # auto-close


class GuardSettings(_Section):
    """Loop and flood protection."""

    sender_rate_limit: int = Field(default=20, ge=1)
    sender_rate_window_minutes: float = Field(default=60, gt=0)
    max_message_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_parts: int = Field(default=200, gt=0)
    max_depth: int = Field(default=10, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    polite_reply_per_hour: int = Field(default=3, ge=0)
    # Mail fetched at once holds at most this many bytes (a bigger mail comes alone).
    max_batch_bytes: int = Field(default=16 * 1024 * 1024, gt=0)


class StorageSettings(_Section):
    """What is kept of inbound mail, and for how long."""

    # Raw mail of ledger rows processed longer ago is deleted (0: kept forever); the
    # ledger rows stay. Mail in quarantine is kept while it is there.
    raw_retention_days: float = Field(default=90, ge=0)
    check_interval_seconds: float = Field(default=3600, gt=0)


DANGEROUS_EXTENSIONS = (
    ".exe",
    ".com",
    ".scr",
    ".pif",
    ".bat",
    ".cmd",
    ".js",
    ".jse",
    ".vbs",
    ".vbe",
    ".wsf",
    ".ps1",
    ".jar",
    ".msi",
    ".dll",
    ".lnk",
    ".hta",
    ".html",
    ".htm",
    ".iso",
    ".img",
    ".sh",
)


class AttachmentSettings(_Section):
    """What is kept of attachments and what the assignee's notice carries."""

    # A bigger attachment is listed (name, size, type) but its bytes are not kept.
    max_bytes: int = Field(default=25 * 1024 * 1024, ge=0)
    # Per mail: attachments past this total are listed, not kept.
    max_total_bytes: int = Field(default=50 * 1024 * 1024, ge=0)
    # The assignee's notice attaches the (safe) files while their total stays under this.
    attach_to_notice_max_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    dangerous_extensions: list[str] = Field(default_factory=lambda: list(DANGEROUS_EXTENSIONS))


ChannelKind = Literal["webhook", "teams", "slack", "twilio"]


class ChannelSettings(_Section):
    """One notification channel besides e-mail (see ``daemon.channels``)."""

    name: str = ""
    kind: ChannelKind
    # webhook/teams/slack: the endpoint; twilio: the API base (tests point it at a fake).
    url: str = ""
    events: list[str] = Field(default_factory=lambda: ["escalated"])
    min_priority: Literal["critical", "high", "medium", "low"] | None = None
    card: Literal["adaptive", "messagecard"] = "adaptive"  # teams: the payload format
    ticket_url: str | None = None  # e.g. "https://desk.example.com/tickets/{id}"
    timeout_seconds: float = Field(default=10, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    # twilio (WhatsApp): the secret may come from the environment variable named here.
    account_sid: str | None = None
    auth_token: SecretStr | None = None
    auth_token_env: str = "MAILTRIAGE_TWILIO_AUTH_TOKEN"  # noqa: S105 (a variable name)
    from_number: str | None = None
    to_numbers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _kind_needs(self) -> ChannelSettings:
        if self.kind != "twilio" and not self.url:
            raise ValueError(f"url: required for a {self.kind} channel")
        if self.kind == "twilio" and not (
            self.account_sid and self.from_number and self.to_numbers
        ):
            raise ValueError("account_sid: twilio needs account_sid, from_number and to_numbers")
        if not self.name:
            self.name = self.kind
        return self


class OpenAISettings(_Section):
    """The optional OpenAI-compatible model, asked only when the local one is unsure."""

    enabled: bool = False
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str = "gpt-4o-mini"
    timeout_seconds: float = Field(default=10, gt=0)


class ClassifierSettings(_Section):
    """Text understanding."""

    model_path: str | None = None
    cache_dir: str = "var/cache"  # where the default model is trained to on first run
    confidence_threshold: float = Field(default=0.35, ge=0, le=1)
    triage_team: str | None = None
    spelling: bool = True
    vip_senders: list[str] = Field(default_factory=list)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)


class Settings(_Section):
    """The whole configuration."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    mailbox: MailboxSettings = Field(default_factory=MailboxSettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    teams: list[TeamSettings] = Field(default_factory=list)
    categories: list[CategorySettings] = Field(default_factory=list)
    sla: SlaSettings = Field(default_factory=SlaSettings)
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings)
    tickets: TicketSettings = Field(default_factory=TicketSettings)
    guards: GuardSettings = Field(default_factory=GuardSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    attachments: AttachmentSettings = Field(default_factory=AttachmentSettings)
    channels: list[ChannelSettings] = Field(default_factory=list)
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    base_dir: str = "."

    @field_validator("teams")
    @classmethod
    def _unique_teams(cls, teams: list[TeamSettings]) -> list[TeamSettings]:
        names = [t.name for t in teams]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate team name {sorted(dup)[0]!r}")
        return teams

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, channels: list[ChannelSettings]) -> list[ChannelSettings]:
        names = [c.name for c in channels]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate channel name {sorted(dup)[0]!r} (give each a name)")
        return channels

    @model_validator(mode="after")
    def _categories_name_teams(self) -> Settings:
        names = {t.name for t in self.teams}
        for i, cat in enumerate(self.categories):
            if names and cat.team not in names:
                raise ValueError(f"categories.{i}.team: unknown team {cat.team!r}")
        triage = self.classifier.triage_team
        if triage and names and triage not in names:
            raise ValueError(f"classifier.triage_team: unknown team {triage!r}")
        return self

    def is_agent(self, address: str | None) -> bool:
        """True for a member of a configured team (compared as bare, lower-case addresses)."""
        wanted = (address or "").lower()
        return bool(wanted) and any(wanted == m.lower() for t in self.teams for m in t.members)

    def team(self, name: str) -> TeamSettings | None:
        """Return the team called ``name``, or None."""
        return next((t for t in self.teams if t.name == name), None)

    def category(self, name: str) -> CategorySettings | None:
        """Return the category called ``name``, or None."""
        return next((c for c in self.categories if c.name == name), None)
