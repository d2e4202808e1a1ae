"""The one place that picks concrete classes from the settings.

Backends and transports are a plain dict of factories (no plugin magic);
heavy client libraries are imported only when their backend is configured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from classifier.base import Classifier, Corrector
from config.loader import database_url, resolve_path
from config.schema import DEFAULT_CATEGORIES, Settings
from daemon.approvals import ApprovalDesk
from daemon.backends.base import MailboxBackend, Transport
from daemon.backends.maildir import MaildirBackend, MaildirTransport
from daemon.channels import ChannelSender
from daemon.clock import Clock, SystemClock
from daemon.notify import Composer
from daemon.outbox import OutboxSender
from daemon.pipeline import Pipeline
from daemon.runner import Runner
from daemon.store.db import make_engine, migrate, session_factory
from daemon.work import WorkDesk
from templates import TemplateRenderer

log = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
OUTLOOK_SCOPE = "https://outlook.office365.com/.default"


def _token_provider(oauth2, scope: str):
    if oauth2 is None:
        return None
    from daemon.backends.oauth import MsalTokenProvider

    return MsalTokenProvider(oauth2, scope)


def _imap_backend(s: Settings) -> MailboxBackend:
    from daemon.backends.imap import ImapBackend

    return ImapBackend(s.mailbox, _token_provider(s.mailbox.oauth2, OUTLOOK_SCOPE))


def _graph_backend(s: Settings) -> MailboxBackend:
    from daemon.backends.graph import GraphBackend

    return GraphBackend(s.mailbox, _token_provider(s.mailbox.oauth2, GRAPH_SCOPE))


def _ews_backend(s: Settings) -> MailboxBackend:
    from daemon.backends.ews import EwsBackend

    return EwsBackend(s.mailbox)


def _smtp_transport(s: Settings) -> Transport:
    from daemon.backends.smtp import SmtpTransport

    return SmtpTransport(s.outbound, _token_provider(s.outbound.oauth2, OUTLOOK_SCOPE))


def _graph_transport(s: Settings) -> Transport:
    from daemon.backends.graph import GraphTransport

    oauth2 = s.outbound.oauth2 or s.mailbox.oauth2
    return GraphTransport(s.outbound, _token_provider(oauth2, GRAPH_SCOPE), mailbox=s.mailbox)


def _ews_transport(s: Settings) -> Transport:
    from daemon.backends.ews import EwsTransport

    return EwsTransport(s.outbound, s.mailbox)


BACKENDS: dict[str, Callable[[Settings], MailboxBackend]] = {
    "maildir": lambda s: MaildirBackend(resolve_path(s, s.mailbox.path)),
    "imap": _imap_backend,
    "graph": _graph_backend,
    "ews": _ews_backend,
}

TRANSPORTS: dict[str, Callable[[Settings], Transport]] = {
    "maildir": lambda s: MaildirTransport(resolve_path(s, s.outbound.path)),
    "smtp": _smtp_transport,
    "graph": _graph_transport,
    "ews": _ews_transport,
}


def open_store(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    """Create the engine, apply migrations, return (engine, session factory)."""
    url = database_url(settings)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    busy_ms = int(settings.database.busy_timeout_seconds * 1000)
    engine = make_engine(url, echo=settings.database.echo, busy_ms=busy_ms)
    migrate(engine)
    return engine, session_factory(engine)


def build_text_understanding(settings: Settings) -> tuple[Corrector, Classifier]:
    """Return the configured corrector and classifier (trains the default model once)."""
    from classifier.factory import build_classifier, build_corrector

    categories = [c.name for c in settings.categories] or list(DEFAULT_CATEGORIES)
    cache_dir = resolve_path(settings, settings.classifier.cache_dir)
    cfg = settings.classifier
    model_path = resolve_path(settings, cfg.model_path) if cfg.model_path else None
    keywords = {c.name: list(c.keywords) for c in settings.categories}
    return build_corrector(cfg, cache_dir), build_classifier(
        cfg, categories, cache_dir, model_path=model_path, keywords=keywords
    )


@dataclass
class App:
    """Everything a running mailtriage needs, built from the settings."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    clock: Clock
    backend: MailboxBackend
    transport: Transport
    composer: Composer
    pipeline: Pipeline
    sender: OutboxSender
    runner: Runner
    extensions: tuple = field(default_factory=tuple)

    def close(self) -> None:
        """Release connections."""
        for part in (self.backend, self.transport):
            try:
                part.close()
            except Exception:  # closing one part must not keep the others open
                log.warning("closing %s failed", part, exc_info=True)
        self.engine.dispose()


def build_app(
    settings: Settings,
    clock: Clock | None = None,
    crash: Callable[[str], None] | None = None,
    text: tuple[Corrector, Classifier] | None = None,
) -> App:
    """Build the whole daemon from ``settings``."""
    clock = clock or SystemClock()
    engine, factory = open_store(settings)
    backend = BACKENDS[settings.mailbox.backend](settings)
    transport = TRANSPORTS[settings.outbound.transport](settings)
    corrector, classifier = text or build_text_understanding(settings)
    override = resolve_path(settings, "templates")
    renderer = TemplateRenderer(override if override.is_dir() else None)
    composer = Composer(settings, renderer, clock)
    extensions = _extensions(settings, factory, composer, clock)
    pipeline = Pipeline(
        settings, factory, corrector, classifier, composer, clock, crash, extensions
    )
    channels = ChannelSender(factory, settings, clock) if settings.channels else None
    sender = OutboxSender(
        factory, transport, clock, settings.outbound.max_attempts, crash, channels
    )
    runner = Runner(
        backend,
        pipeline,
        sender,
        factory,
        clock,
        settings.guards.max_attempts,
        crash=crash,
        max_batch_bytes=settings.guards.max_batch_bytes,
    )
    return App(
        settings,
        engine,
        factory,
        clock,
        backend,
        transport,
        composer,
        pipeline,
        sender,
        runner,
        extensions,
    )


def _extensions(settings, factory, composer, clock) -> tuple:
    """Pipeline extensions, in order: reply-to-approve, then agents' and requesters' commands."""
    return (ApprovalDesk(settings, factory, composer, clock), WorkDesk(settings, composer, clock))
