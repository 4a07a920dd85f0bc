"""Channel providers: e-mail over SMTP, the other channels through an HTTP webhook.

A provider takes a batch of messages and reports, per message, whether it went out and after
how many attempts. Transient failures (connection errors, SMTP 4xx, HTTP 5xx/429/timeouts) are
retried with backoff; permanent ones (SMTP 5xx, HTTP 4xx) fail at once. Nothing is dropped: a
message that did not go out comes back with its error."""

import asyncio
import binascii
import html
import smtplib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.header import Header
from email.utils import formatdate
from typing import Protocol

import httpx
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from services.marketing.config import MarketingSettings
from services.marketing.rules import CampaignChannel, links
from shared.contact_rules import redact_contact_details


@dataclass
class OutgoingMessage:
    send_id: uuid.UUID
    campaign_id: uuid.UUID
    customer_id: uuid.UUID
    channel: str
    to: str
    text: str
    subject: str | None = None
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class DeliveryResult:
    send_id: uuid.UUID
    ok: bool
    attempts: int
    error: str | None = None


class Provider(Protocol):
    async def deliver(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]: ...


class PermanentFailure(Exception):
    """The provider refused the message for good: retrying will not help."""


class _Attempts:
    def __init__(self) -> None:
        self.count = 0


def _wait(settings: MarketingSettings) -> wait_exponential:
    return wait_exponential(multiplier=settings.send_retry_wait_s, max=5.0)


def _transient(exc: BaseException) -> bool:
    return not isinstance(exc, PermanentFailure)


# ---- e-mail ---------------------------------------------------------------------------------


class SmtpProvider:
    """A few SMTP connections per batch (worker threads), re-opened when the server drops one."""

    def __init__(self, settings: MarketingSettings) -> None:
        self.settings = settings
        self._domain = settings.smtp_from.rpartition("@")[2] or "localhost"

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Over ``smtp_connections`` connections at once, each in its own thread."""
        lanes = max(1, min(self.settings.smtp_connections, len(messages)))
        chunks = [messages[i::lanes] for i in range(lanes)]
        done = await asyncio.gather(
            *(asyncio.to_thread(self._deliver_all, chunk) for chunk in chunks)
        )
        by_id = {result.send_id: result for results in done for result in results}
        return [by_id[m.send_id] for m in messages]

    def _deliver_all(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        connection: list[smtplib.SMTP | None] = [None]
        try:
            return [self._deliver_one(connection, message) for message in messages]
        finally:
            if connection[0] is not None:
                try:
                    connection[0].quit()
                except (smtplib.SMTPException, OSError):
                    connection[0].close()

    def _deliver_one(
        self, connection: list[smtplib.SMTP | None], message: OutgoingMessage
    ) -> DeliveryResult:
        attempts = _Attempts()
        email = self._email(message)
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.settings.send_max_attempts),
                wait=_wait(self.settings),
                retry=retry_if_exception(_transient),
                reraise=True,
            ):
                with attempt:
                    attempts.count += 1
                    self._send(connection, message.to, email)
        except Exception as exc:  # every failure is reported for this recipient
            return DeliveryResult(message.send_id, False, attempts.count, _describe(exc, message))
        return DeliveryResult(message.send_id, True, attempts.count)

    def _send(self, connection: list[smtplib.SMTP | None], to: str, email: bytes) -> None:
        try:
            if connection[0] is None:
                connection[0] = self._connect()
            connection[0].sendmail(self.settings.smtp_from, [to], email)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(code >= 500 for code in codes):
                refusals = [f"{code} {reply!r}" for code, reply in exc.recipients.values()]
                raise PermanentFailure(f"recipient refused: {', '.join(refusals)}") from exc
            raise
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                raise PermanentFailure(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
            self._drop(connection)
            raise
        except (smtplib.SMTPException, OSError):
            self._drop(connection)
            raise

    @staticmethod
    def _drop(connection: list[smtplib.SMTP | None]) -> None:
        if connection[0] is not None:
            connection[0].close()
            connection[0] = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        client = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_s)
        if s.smtp_starttls:
            client.starttls()
        if s.smtp_username and s.smtp_password is not None:
            client.login(s.smtp_username, s.smtp_password.get_secret_value())
        return client

    def _email(self, message: OutgoingMessage) -> bytes:
        """The MIME message as bytes, composed directly: the ``email`` package's generator costs
        more than the whole SMTP exchange (about 1.7 ms a message)."""
        boundary = f"=_{message.send_id.hex}"
        headers = {
            "From": self.settings.smtp_from,
            "To": message.to,
            "Subject": message.subject or "",
            "Date": formatdate(usegmt=True),
            "Message-ID": f"<{message.send_id.hex}@{self._domain}>",
            **message.headers,
            "MIME-Version": "1.0",
        }
        lines = [f"{name}: {_header_value(value)}" for name, value in headers.items()]
        parts = [("plain", message.text)]
        if message.html is not None:
            parts.append(("html", message.html))
        lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        lines.append("")
        for subtype, body in parts:
            lines += [
                f"--{boundary}",
                f'Content-Type: text/{subtype}; charset="utf-8"',
                "Content-Transfer-Encoding: quoted-printable",
                "",
                binascii.b2a_qp(body.encode(), istext=True).decode("ascii").replace("\n", "\r\n"),
            ]
        lines += [f"--{boundary}--", ""]
        return "\r\n".join(lines).encode("ascii")


def _header_value(value: str) -> str:
    """One line (no header injection through a name), RFC 2047-encoded if not ASCII."""
    value = " ".join(value.split())
    if value.isascii():
        return value
    return Header(value, "utf-8").encode()


# ---- webhooks (SMS, Telegram, WhatsApp, push) -----------------------------------------------


class WebhookProvider:
    """POSTs ``{send_id, campaign_id, customer_id, channel, to, text}`` as JSON to the channel's
    provider; a 2xx means accepted."""

    def __init__(self, settings: MarketingSettings, url: str) -> None:
        self.settings = settings
        self.url = url

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        headers = {}
        if self.settings.webhook_token is not None:
            headers["Authorization"] = f"Bearer {self.settings.webhook_token.get_secret_value()}"
        limit = asyncio.Semaphore(self.settings.sender_concurrency)
        async with httpx.AsyncClient(
            timeout=self.settings.webhook_timeout_s, headers=headers
        ) as client:

            async def one(message: OutgoingMessage) -> DeliveryResult:
                async with limit:
                    return await self._deliver_one(client, message)

            return list(await asyncio.gather(*(one(m) for m in messages)))

    async def _deliver_one(
        self, client: httpx.AsyncClient, message: OutgoingMessage
    ) -> DeliveryResult:
        attempts = _Attempts()
        body = {
            "send_id": str(message.send_id),
            "campaign_id": str(message.campaign_id),
            "customer_id": str(message.customer_id),
            "channel": message.channel,
            "to": message.to,
            "text": message.text,
        }
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.settings.send_max_attempts),
                wait=_wait(self.settings),
                retry=retry_if_exception(_transient),
                reraise=True,
            ):
                with attempt:
                    attempts.count += 1
                    response = await client.post(
                        self.url, json=body, headers={"Idempotency-Key": str(message.send_id)}
                    )
                    if response.status_code == 429 or response.status_code >= 500:
                        raise RuntimeError(f"provider answered {response.status_code}")
                    if response.status_code >= 400:
                        raise PermanentFailure(
                            f"provider refused: {response.status_code} {response.text[:200]}"
                        )
        except Exception as exc:
            return DeliveryResult(message.send_id, False, attempts.count, _describe(exc, message))
        return DeliveryResult(message.send_id, True, attempts.count)


class UnconfiguredChannel:
    """A channel without a provider: every message fails, reported, never silently dropped."""

    def __init__(self, channel: str) -> None:
        self.channel = channel

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        error = f"no provider configured for channel {self.channel}"
        return [DeliveryResult(m.send_id, False, 0, error) for m in messages]


def providers(settings: MarketingSettings) -> dict[str, Provider]:
    webhooks = {
        CampaignChannel.sms: settings.sms_webhook_url,
        CampaignChannel.telegram: settings.telegram_webhook_url,
        CampaignChannel.whatsapp: settings.whatsapp_webhook_url,
        CampaignChannel.push: settings.push_webhook_url,
    }
    result: dict[str, Provider] = {CampaignChannel.email.value: SmtpProvider(settings)}
    for channel, url in webhooks.items():
        result[channel.value] = (
            WebhookProvider(settings, url) if url else UnconfiguredChannel(channel)
        )
    return result


def _describe(exc: BaseException, message: OutgoingMessage) -> str:
    """The failure, without the recipient's address: servers quote it ("550 <ada@...>: no such
    user"), and the error is kept on the send, shown in reports and published with
    MessageFailed, where no e-mail address or phone number may go. Providers quote a number
    as they write it (without its +, with spaces), so any address or number left is
    redacted too."""
    text = f"{type(exc).__name__}: {exc}".replace(message.to, "<recipient>")
    return redact_contact_details(text)[:1000]


# ---- what goes into an e-mail ---------------------------------------------------------------


def html_body(text: str, open_pixel: str) -> str:
    """The text as HTML, its links clickable, with the open pixel at the end."""
    parts = []
    last = 0
    for start, end in links(text):
        parts.append(html.escape(text[last:start]))
        url = html.escape(text[start:end], quote=True)
        parts.append(f'<a href="{url}">{url}</a>')
        last = end
    parts.append(html.escape(text[last:]))
    body = "".join(parts).replace("\n", "<br>\n")
    pixel = f'<img src="{html.escape(open_pixel, quote=True)}" width="1" height="1" alt="">'
    return f"<!doctype html>\n<html><body>{body}\n{pixel}</body></html>\n"
