"""What each command does to a ticket; shared by agents' mail and the admin's command line.

Every command is applied or refused with a reason, and either way it is a line
in the ticket's history (``command_applied`` / ``command_refused``) naming the
command, the actor and the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from config.errors import UserError
from config.schema import PRIORITIES, Settings
from daemon.notify import Composer
from daemon.sla import record_explanation
from daemon.store.models import CategoryCorrection, Comment, Ticket
from daemon.tickets import add_event, change_status, routed_status, weighted_load
from routing.commands import SETTABLE_STATUSES, Command
from routing.route import Draft, assign


@dataclass(frozen=True)
class Result:
    """One command's fate: its line, and the reason when it was refused."""

    line: str
    reason: str = ""

    @property
    def applied(self) -> bool:
        """True when the command changed the ticket (or recorded what it asked)."""
        return not self.reason


@dataclass
class Report:
    """Every command of one mail (or one command line), applied or refused."""

    results: list[Result] = field(default_factory=list)

    @property
    def applied(self) -> list[Result]:
        """The applied commands, in order."""
        return [r for r in self.results if r.applied]

    @property
    def refused(self) -> list[Result]:
        """The refused commands, in order."""
        return [r for r in self.results if not r.applied]


class Refused(UserError):
    """A command cannot be applied (the agent must act); the message is the reason recorded."""


class CommandRunner:
    """Applies commands to a ticket inside the caller's transaction."""

    def __init__(self, settings: Settings, composer: Composer) -> None:
        self.settings = settings
        self.composer = composer
        self._do: dict[str, Callable[[Session, Ticket, str, str, datetime], None]] = {
            "take": self._take,
            "assign": self._assign,
            "status": self._status,
            "priority": self._priority,
            "category": self._category,
            "team": self._team,
            "note": self._note,
            "cc": self._cc,
            "reason": self._reason,
            "close": self._close,
        }

    def apply(
        self,
        session: Session,
        ticket: Ticket,
        commands: Sequence[Command],
        actor: str,
        at: datetime,
    ) -> Report:
        """Apply ``commands`` in order for ``actor``; every one is recorded."""
        report = Report()
        for command in commands:
            report.results.append(self._one(session, ticket, command, actor, at))
        return report

    def refuse_all(
        self,
        session: Session,
        ticket: Ticket,
        commands: Sequence[Command],
        actor: str,
        at,
        why: str,
    ) -> Report:
        """Record every command as refused for ``why`` (nothing changes)."""
        report = Report([Result(c.line, why) for c in commands])
        for result in report.results:
            _record(session, ticket, actor, at, result)
        return report

    def _one(self, session, ticket, command: Command, actor: str, at) -> Result:
        action = self._do.get(command.name)
        try:
            if action is None:
                raise Refused(f"unknown command #{command.name}")
            action(session, ticket, command.arg.strip(), actor, at)
            result = Result(command.line)
        except Refused as exc:
            result = Result(command.line, str(exc))
        _record(session, ticket, actor, at, result)
        return result

    # -- the commands ---------------------------------------------------------
    def _take(self, session, ticket, arg, actor, at) -> None:
        self._give(session, ticket, actor, actor, at)

    def _assign(self, session, ticket, arg, actor, at) -> None:
        if not self.settings.is_agent(arg):
            raise Refused(f"{arg or 'nobody'} is not a member of any team")
        self._give(session, ticket, arg.lower(), actor, at)

    def _give(self, session, ticket, agent: str, actor: str, at) -> None:
        ticket.assignee = agent
        if ticket.status == "new":
            change_status(session, ticket, "assigned", actor, at, settings=self.settings)
        add_event(session, ticket.id, actor, "assigned", at, assignee=agent)
        if agent != actor.lower():
            self.composer.compose_for_agents(session, "assigned", ticket, [agent], reasons=[])

    def _status(self, session, ticket, arg, actor, at) -> None:
        wanted = arg.lower()
        if wanted not in SETTABLE_STATUSES:
            raise Refused(f"status must be one of {', '.join(SETTABLE_STATUSES)}")
        if not change_status(session, ticket, wanted, actor, at, settings=self.settings):
            raise Refused(f"the ticket is already {wanted}")
        if wanted == "resolved":
            self._tell_resolved(session, ticket, actor)

    def _tell_resolved(self, session, ticket, actor: str) -> None:
        days = self.settings.tickets.reopen_days
        self.composer.compose(
            session, "resolved", ticket, [ticket.requester], author=actor, reopen_days=days
        )

    def _priority(self, session, ticket, arg, actor, at) -> None:
        if arg.lower() not in PRIORITIES:
            raise Refused(f"priority must be one of {', '.join(PRIORITIES)}")
        ticket.priority = arg.lower()

    def _category(self, session, ticket, arg, actor, at) -> None:
        names = [c.name for c in self.settings.categories]
        if arg.lower() not in names:
            raise Refused(f"category must be one of {', '.join(names)}")
        if arg.lower() == ticket.category:
            raise Refused(f"the category is already {ticket.category}")
        session.add(
            CategoryCorrection(
                ticket_id=ticket.id,
                text=ticket.corrected_text,
                old_category=ticket.category,
                new_category=arg.lower(),
                actor=actor,
                at=at,
            )
        )
        ticket.category = arg.lower()

    def _team(self, session, ticket, arg, actor, at) -> None:
        team = next((t for t in self.settings.teams if t.name.lower() == arg.lower()), None)
        if team is None:
            raise Refused(f"team must be one of {', '.join(t.name for t in self.settings.teams)}")
        ticket.team = team.name
        members = [m.lower() for m in team.members]
        if (ticket.assignee or "").lower() not in members:
            draft = Draft(team=team.name, priority=ticket.priority)
            ticket.assignee = assign(team.name, self.settings, weighted_load(session), draft)
            ticket.status = (
                routed_status(ticket.assignee) if ticket.status == "new" else ticket.status
            )

    def _note(self, session, ticket, arg, actor, at) -> None:
        if not arg:
            raise Refused("#note needs the note's text on its line")
        session.add(Comment(ticket_id=ticket.id, at=at, author=actor, text=arg, internal=True))

    def _cc(self, session, ticket, arg, actor, at) -> None:
        address = arg.lower()
        if "@" not in address or any(c in address for c in ' ,;<>"\r\n'):
            raise Refused("#cc needs one e-mail address")
        ticket.watchers = [*dict.fromkeys([*(ticket.watchers or []), address])]

    def _reason(self, session, ticket, arg, actor, at) -> None:
        if not arg:
            raise Refused("#reason needs the explanation on its line")
        if not record_explanation(session, ticket, actor, arg, at):
            raise Refused("the ticket has not breached its SLA: nothing to explain")

    def _close(self, session, ticket, arg, actor, at) -> None:
        if not change_status(session, ticket, "closed", actor, at, settings=self.settings):
            raise Refused("the ticket is already closed")


def _record(session: Session, ticket: Ticket, actor: str, at: datetime, result: Result) -> None:
    action = "command_applied" if result.applied else "command_refused"
    details = {"command": result.line} | ({"reason": result.reason} if result.reason else {})
    add_event(session, ticket.id, actor, action, at, **details)
