"""A local stand-in for an Exchange Web Services (EWS) endpoint, on 127.0.0.1.

No Exchange server can run here, so this speaks the documented EWS SOAP wire
format (``Exchange.asmx``: SOAP 1.1 envelopes in the ``messages``/``types``
namespaces, a ``ServerVersionInfo`` header, one ``*ResponseMessage`` per input)
for exactly the operations exchangelib sends for mailtriage's usage. They were
found by logging what exchangelib 5.x posts: ``GetFolder`` (distinguished
``root``, ``msgfolderroot``, ``inbox``, ``sentitems``), ``FindFolder`` (a shallow
search with a ``DisplayName`` restriction), ``CreateFolder``, ``FindItem``
(indexed paging, sorted by ``DateTimeReceived``), ``GetItem`` (``MimeContent``,
base64), ``MoveItem`` and ``CreateItem`` from ``MimeContent`` with
``MessageDisposition`` ``SendOnly``/``SendAndSaveCopy``. HTTP Basic auth only.
"""

from __future__ import annotations

import base64
import itertools
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.etree.ElementTree import Element  # only for type hints; parsing is defused
from xml.sax.saxutils import escape, quoteattr

from defusedxml.ElementTree import fromstring

from tests.support.http_fake import FakeHandler, LoopbackHTTPFake

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"


@dataclass
class EwsItem:
    """A message in a folder: its id, change key, MIME bytes and arrival time."""

    id: str
    changekey: str
    mime: bytes
    received: datetime


@dataclass
class EwsFolder:
    """A mail folder (``distinguished`` is its well-known id, if any)."""

    id: str
    name: str
    parent: str | None
    distinguished: str | None = None
    items: dict[str, EwsItem] = field(default_factory=dict)


class _Handler(FakeHandler):
    def do_POST(self) -> None:
        fake: FakeEws = self.fake
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        token = base64.b64encode(f"{fake.username}:{fake.password}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {token}":
            self.reply(401, b"", {"WWW-Authenticate": 'Basic realm="127.0.0.1"'})
            return
        op = fromstring(body).find(f"{{{SOAP}}}Body")[0]
        self.reply(200, _envelope(fake.handle(op)), {"Content-Type": "text/xml; charset=utf-8"})


class FakeEws(LoopbackHTTPFake):
    """Threaded fake EWS endpoint: ``start()``, use ``url``, ``stop()`` (or ``with``)."""

    handler = _Handler

    def __init__(self, username: str = "support", password: str = "secret") -> None:
        super().__init__()
        self.username, self.password = username, password
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self.folders: dict[str, EwsFolder] = {}
        for wk, name, parent in (
            ("root", "root", None),
            ("msgfolderroot", "Top of Information Store", "f-root"),
            ("inbox", "Inbox", "f-msgfolderroot"),
            ("sentitems", "Sent Items", "f-msgfolderroot"),
        ):
            self.folders[f"f-{wk}"] = EwsFolder(f"f-{wk}", name, parent, wk)
        self.operations: list[str] = []
        self.sent: list[tuple[str, bytes]] = []  # (MessageDisposition, MIME bytes)
        self.faults: list[tuple[str, str]] = []  # (operation, EWS ResponseCode) answered next

    # --- test-facing helpers -------------------------------------------------
    @property
    def url(self) -> str:
        """The service endpoint, like ``https://host/EWS/Exchange.asmx``."""
        return f"{self.base}/EWS/Exchange.asmx"

    def deliver(self, mime: bytes, folder: str = "Inbox", received: datetime | None = None) -> str:
        """Put a message into ``folder`` (by display name); return its item id."""
        n = next(self._ids)
        item = EwsItem(f"item-{n}", f"ck-{n}", mime, received or datetime.now(UTC))
        with self.lock:
            self.by_name(folder).items[item.id] = item
        return item.id

    def by_name(self, name: str) -> EwsFolder:
        """Return the folder whose display name is ``name`` (case-insensitive)."""
        return next(f for f in self.folders.values() if f.name.lower() == name.lower())

    def mimes(self, folder: str) -> list[bytes]:
        """MIME bytes of the messages in ``folder``."""
        with self.lock:
            return [i.mime for i in self.by_name(folder).items.values()]

    def fail_next(self, operation: str, code: str) -> None:
        """Answer the next ``operation`` (e.g. "CreateItem") with the error ``code``."""
        self.faults.append((operation, code))

    # --- operations ------------------------------------------------------------
    def handle(self, op: Element) -> str:
        """Answer one operation element with its ``*Response`` body content."""
        name = op.tag.split("}")[1]
        self.operations.append(name)
        handler = getattr(self, f"_op_{name}", None)
        if handler is None:
            raise NotImplementedError(f"fake EWS has no {name}")
        with self.lock:
            fault = next((f for f in self.faults if f[0] == name), None)
            if fault is not None:
                self.faults.remove(fault)
                messages = [_error(name, fault[1], f"injected {fault[1]}")]
            else:
                messages = handler(op)
        return f"<m:{name}Response><m:ResponseMessages>{''.join(messages)}</m:ResponseMessages></m:{name}Response>"

    def _folder(self, ref: Element) -> EwsFolder | None:
        if ref.tag == f"{{{T}}}DistinguishedFolderId":
            return self.folders.get(f"f-{ref.get('Id')}")
        return self.folders.get(ref.get("Id", ""))

    def _op_GetFolder(self, op: Element) -> list[str]:
        out = []
        for ref in _kids(op, "FolderIds"):
            folder = self._folder(ref)
            if folder is None:
                out.append(
                    _error(
                        "GetFolder",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found",
                    )
                )
            else:
                out.append(_ok("GetFolder", f"<m:Folders>{self._folder_xml(folder)}</m:Folders>"))
        return out

    def _op_FindFolder(self, op: Element) -> list[str]:
        parent = self._folder(op.find(f"{{{M}}}ParentFolderIds")[0])
        if parent is None:
            return [
                _error(
                    "FindFolder", "ErrorFolderNotFound", "The specified folder could not be found"
                )
            ]
        wanted = {c.get("Value", "").lower() for c in op.iter(f"{{{T}}}Constant")}
        kids = [f for f in self.folders.values() if f.parent == parent.id]
        if wanted:
            kids = [f for f in kids if f.name.lower() in wanted]
        body = "".join(self._folder_xml(f) for f in kids)
        root = (
            f'<m:RootFolder IndexedPagingOffset="{len(kids)}" TotalItemsInView="{len(kids)}"'
            f' IncludesLastItemInRange="true"><t:Folders>{body}</t:Folders></m:RootFolder>'
        )
        return [_ok("FindFolder", root)]

    def _op_CreateFolder(self, op: Element) -> list[str]:
        parent = self._folder(op.find(f"{{{M}}}ParentFolderId")[0])
        out = []
        for spec in _kids(op, "Folders"):
            name = spec.findtext(f"{{{T}}}DisplayName", "")
            if parent is None:
                out.append(_error("CreateFolder", "ErrorParentFolderNotFound", "No parent"))
                continue
            if any(
                f.parent == parent.id and f.name.lower() == name.lower()
                for f in self.folders.values()
            ):
                out.append(
                    _error("CreateFolder", "ErrorFolderExists", "A folder with that name exists")
                )
                continue
            folder = EwsFolder(f"f-{next(self._ids)}", name, parent.id)
            self.folders[folder.id] = folder
            ids = f'<t:FolderId Id="{folder.id}" ChangeKey="fck"/>'
            out.append(_ok("CreateFolder", f"<m:Folders><t:Folder>{ids}</t:Folder></m:Folders>"))
        return out

    def _op_FindItem(self, op: Element) -> list[str]:
        folder = self._folder(op.find(f"{{{M}}}ParentFolderIds")[0])
        if folder is None:
            return [
                _error("FindItem", "ErrorFolderNotFound", "The specified folder could not be found")
            ]
        items = sorted(folder.items.values(), key=lambda i: i.received)
        order = op.find(f".//{{{T}}}FieldOrder")
        if order is not None and order.get("Order") == "Descending":
            items.reverse()
        view = op.find(f"{{{M}}}IndexedPageItemView")
        start = int(view.get("Offset", "0")) if view is not None else 0
        size = int(view.get("MaxEntriesReturned", "1000")) if view is not None else 1000
        page = items[start : start + size]
        last = "true" if start + size >= len(items) else "false"
        body = "".join(
            f"<t:Message>{_item_id(i)}<t:Size>{len(i.mime)}</t:Size>{_received(i)}</t:Message>"
            for i in page
        )
        root = (
            f'<m:RootFolder IndexedPagingOffset="{start + len(page)}" TotalItemsInView="{len(items)}"'
            f' IncludesLastItemInRange="{last}"><t:Items>{body}</t:Items></m:RootFolder>'
        )
        return [_ok("FindItem", root)]

    def _find_item(self, item_id: str) -> tuple[EwsFolder, EwsItem] | None:
        for folder in self.folders.values():
            if item_id in folder.items:
                return folder, folder.items[item_id]
        return None

    def _op_GetItem(self, op: Element) -> list[str]:
        out = []
        for ref in _kids(op, "ItemIds"):
            found = self._find_item(ref.get("Id", ""))
            if found is None:
                out.append(
                    _error("GetItem", "ErrorItemNotFound", "The specified object was not found")
                )
                continue
            item = found[1]
            mime = base64.b64encode(item.mime).decode()
            xml = f'<t:Message><t:MimeContent CharacterSet="UTF-8">{mime}</t:MimeContent>'
            xml += f"{_item_id(item)}{_received(item)}</t:Message>"
            out.append(_ok("GetItem", f"<m:Items>{xml}</m:Items>"))
        return out

    def _op_MoveItem(self, op: Element) -> list[str]:
        target = self._folder(op.find(f"{{{M}}}ToFolderId")[0])
        out = []
        for ref in _kids(op, "ItemIds"):
            found = self._find_item(ref.get("Id", ""))
            if found is None or target is None:
                out.append(
                    _error("MoveItem", "ErrorItemNotFound", "The specified object was not found")
                )
                continue
            source, item = found
            del source.items[item.id]
            n = next(self._ids)  # Exchange gives a moved item a new id
            moved = EwsItem(f"item-{n}", f"ck-{n}", item.mime, item.received)
            target.items[moved.id] = moved
            out.append(
                _ok("MoveItem", f"<m:Items><t:Message>{_item_id(moved)}</t:Message></m:Items>")
            )
        return out

    def _op_CreateItem(self, op: Element) -> list[str]:
        disposition = op.get("MessageDisposition", "SaveOnly")
        out = []
        for msg in _kids(op, "Items"):
            mime = base64.b64decode(msg.findtext(f"{{{T}}}MimeContent", ""))
            self.sent.append((disposition, mime))
            if disposition == "SendAndSaveCopy":
                n = next(self._ids)
                item = EwsItem(f"item-{n}", f"ck-{n}", mime, datetime.now(UTC))
                self.folders["f-sentitems"].items[item.id] = item
            out.append(_ok("CreateItem", "<m:Items/>"))
        return out

    def _folder_xml(self, f: EwsFolder) -> str:
        parent = f'<t:ParentFolderId Id="{f.parent}" ChangeKey="fck"/>' if f.parent else ""
        wk = f"<t:DistinguishedFolderId>{f.distinguished}</t:DistinguishedFolderId>"
        kids = sum(1 for c in self.folders.values() if c.parent == f.id)
        return (
            f'<t:Folder><t:FolderId Id="{f.id}" ChangeKey="fck"/>{parent}'
            f"<t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>{escape(f.name)}</t:DisplayName>"
            f"<t:TotalCount>{len(f.items)}</t:TotalCount><t:ChildFolderCount>{kids}</t:ChildFolderCount>"
            f"<t:UnreadCount>0</t:UnreadCount>{wk if f.distinguished else ''}</t:Folder>"
        )


def _kids(op: Element, tag: str) -> list[Element]:
    found = op.find(f"{{{M}}}{tag}")
    return [] if found is None else list(found)


def _item_id(item: EwsItem) -> str:
    return f"<t:ItemId Id={quoteattr(item.id)} ChangeKey={quoteattr(item.changekey)}/>"


def _received(item: EwsItem) -> str:
    stamp = item.received.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"<t:DateTimeReceived>{stamp}</t:DateTimeReceived>"


def _ok(op: str, inner: str) -> str:
    return (
        f'<m:{op}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"{inner}</m:{op}ResponseMessage>"
    )


def _error(op: str, code: str, text: str) -> str:
    return (
        f'<m:{op}ResponseMessage ResponseClass="Error"><m:MessageText>{escape(text)}</m:MessageText>'
        f"<m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
        f"</m:{op}ResponseMessage>"
    )


def _envelope(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{SOAP}" xmlns:m="{M}" xmlns:t="{T}"><s:Header>'
        '<h:ServerVersionInfo xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types"'
        ' MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="6"'
        ' Version="V2017_07_11"/></s:Header>'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()
