"""``mailtriage demo``: init a scratch folder, load sample mail, process it, serve the page."""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

from config.loader import load_settings
from daemon.backends.maildir import deliver


def sample_mails() -> list[tuple[str, bytes]]:
    """Return the packaged sample mails as (name, raw bytes), in order."""
    folder = resources.files("mailtriage") / "samples"
    return sorted((p.name, p.read_bytes()) for p in folder.iterdir() if p.name.endswith(".eml"))


def run_demo(args) -> int:
    """Set up, process the samples, print the tickets and serve the status page."""
    from daemon.app import build_app
    from daemon.scheduler import run_due
    from daemon.store.queries import list_tickets
    from mailtriage.commands import cmd_web, init_project

    target = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mailtriage-demo-"))
    config = init_project(target, force=True)
    if args.port is not None:
        text = config.read_text(encoding="utf-8").replace("port = 8025", f"port = {args.port}")
        config.write_text(text, encoding="utf-8")
    settings = load_settings(config)
    inbox = target / "var/mail/inbox"
    for name, raw in sample_mails():
        deliver(inbox, raw, name)
    print(f"demo folder: {target}")
    print(f"loaded {len(sample_mails())} sample mails; processing (first run trains the model)...")
    app = build_app(settings)
    try:
        stats = app.runner.run_pass()
        run_due(app)
        app.sender.send_due()
        with app.factory() as session:
            tickets = list_tickets(session)
    finally:
        app.close()
    print(f"{stats.fetched} mails -> {len(tickets)} tickets; outcomes: {stats.outcomes}")
    for t in reversed(tickets):
        print(
            f"  {t['id']}  {t['category']:<9} {t['priority']:<8} {t['assignee'] or t['team']:<28} {t['subject'][:50]}"
        )
    print(f"acknowledgements written to {target / 'var/mail/sent/new'}")
    if args.no_serve:
        return 0
    args.config = str(config)
    return cmd_web(args)
