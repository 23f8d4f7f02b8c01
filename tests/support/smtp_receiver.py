"""An SMTP receiver of the test's own: counts every mail that lands, by its Message-ID, so the
audit sees a notification mailed twice even if the sender recorded it once. A minimal asyncio
SMTP server (HELO/EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no TLS, no auth), no framework.

The mail is acknowledged (250) only after it is counted, as a real relay answers after queueing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from email.parser import BytesHeaderParser
from email.policy import default as default_policy

from loadtool.http_receiver import LocalServer
from tests.support.webhook_receiver import Delivery

__all__ = ["SmtpReceiver"]

MAX_LINE = 1 << 20


class SmtpReceiver(LocalServer):
    """``async with SmtpReceiver() as mail:`` - set NOTIFY_SMTP_HOST/PORT to ``mail.host`` and
    ``mail.port``. ``deliveries`` holds one ``Delivery`` per mail, keyed by its Message-ID."""

    line_limit = MAX_LINE

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.deliveries: list[Delivery] = []
        self.malformed = 0

    def counts(self) -> Counter[str]:
        return Counter(d.key for d in self.deliveries)

    def env(self) -> dict[str, str]:
        return {
            "NOTIFY_SMTP_HOST": self.host,
            "NOTIFY_SMTP_PORT": str(self.port),
            "NOTIFY_SMTP_STARTTLS": "false",
            "NOTIFY_SMTP_TLS": "false",
        }

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        await reply("220 smtp-receiver ready")
        while True:
            line = (await reader.readuntil(b"\r\n")).decode("latin-1").rstrip("\r\n")
            verb = line[:4].upper()
            if verb == "EHLO":
                await reply("250-smtp-receiver\r\n250 8BITMIME")
            elif verb in ("HELO", "MAIL", "RCPT", "RSET", "NOOP"):
                await reply("250 ok")
            elif verb == "DATA":
                await reply("354 end with <CRLF>.<CRLF>")
                self._record(await self._read_data(reader))
                await reply("250 ok: queued")
            elif verb == "QUIT":
                await reply("221 bye")
                return
            else:
                await reply("502 not implemented")

    @staticmethod
    async def _read_data(reader: asyncio.StreamReader) -> bytes:
        lines = []
        while (line := await reader.readuntil(b"\r\n")) != b".\r\n":
            lines.append(line[1:] if line.startswith(b".") else line)  # dot-unstuffing
        return b"".join(lines)

    def _record(self, data: bytes) -> None:
        headers = BytesHeaderParser(policy=default_policy).parsebytes(data)
        message_id = headers.get("Message-ID")
        if not message_id:
            self.malformed += 1
            return
        order_id = headers.get("X-Order-Id")
        kind = headers.get("X-Notification-Kind")
        self.deliveries.append(
            Delivery(
                key=str(message_id).strip(),
                order_id=str(order_id) if order_id else None,
                kind=str(kind) if kind else None,
                event_type=None,
            )
        )
