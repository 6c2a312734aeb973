"""Answers about an order in plain words: by rules from its timeline, or by an
LLM (Ollama's ``/api/chat``) given the timeline as its only context."""

from __future__ import annotations

import dataclasses
import http.client
import json
import socket
import urllib.error

from goshop_common import outgoing
from goshop_common.clock import rfc3339
from goshop_domain.events import ORDER_CANCELLED, ORDER_CREATED
from goshop_ops.timeline import (
    EVENT_APPLIED,
    EVENT_PENDING,
    EVENT_PUBLISHED,
    PAYMENT_DECIDED,
    PAYMENT_REFUNDED,
    PAYMENT_VOIDED,
    STATUS_CHANGED,
    Entry,
    OrderTimeline,
)
from goshop_orders.read_contract import PAYMENT_TIMEOUT_REASON

DEFAULT_QUESTION = "Why is this order in its current state?"
# Ollama answers a non-streamed chat in one small JSON document.
MAX_ANSWER_BYTES = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Answer:
    """An explanation, and which explainer (and model) gave it."""

    text: str
    source: str  # "rules" or "ollama"
    model: str | None = None


class LlmUnavailable(Exception):
    """The LLM gave no usable answer; the message says why, for the operator."""


def _at(entry: Entry) -> str:
    return rfc3339(entry.at)


def _failures(entry: Entry) -> str:
    attempts = entry.detail.get("attempts") or 0
    if not attempts:
        return ""
    text = f"; {attempts} publish attempt{'s' if attempts != 1 else ''} failed"
    if entry.detail.get("last_error"):
        text += f", last error: {entry.detail['last_error']}"
    if entry.detail.get("next_attempt_at"):
        text += f"; the outboxer retries at {entry.detail['next_attempt_at']}"
    return text


class RulesExplainer:
    """Explains an order from its timeline alone, the same way every time.

    It answers what state the order is in and why, whatever the question: it
    reads the saga's steps, not the operator's words.
    """

    source = "rules"

    def explain(self, timeline: OrderTimeline, question: str | None = None) -> Answer:
        order = timeline.order
        status = order["status"]
        created = f"it was created at {order['created_at']}"
        if status == "cancelled":
            text = self._cancelled(timeline, created)
        elif status == "paid":
            text = self._paid(timeline, created)
        elif status == "new":
            text = f"Order {order['id']} is still new ({created}): " + self._stuck(timeline)
        else:
            text = f"Order {order['id']} is {status}; {created}."
        return Answer(text, self.source)

    @classmethod
    def _cancelled(cls, timeline: OrderTimeline, created: str) -> str:
        order = timeline.order
        if order.get("reason") == PAYMENT_TIMEOUT_REASON:
            return cls._timed_out(timeline, created)
        payment = timeline.first("payments", PAYMENT_DECIDED)
        changed = timeline.first("orders", STATUS_CHANGED)
        reason = order.get("reason") or (payment.detail.get("reason") if payment else None) or "no reason given"
        when = f" at {_at(changed)}" if changed else ""
        if payment is None:
            return f"Order {order['id']} was cancelled ({reason}){when}, but no payment was recorded for it; {created}."
        return (
            f"Order {order['id']} was cancelled: the payment failed ({reason}) at {_at(payment)}; "
            f"{created} and cancelled{when}."
        )

    @staticmethod
    def _timed_out(timeline: OrderTimeline, created: str) -> str:
        """Cancelled by the payment timeout, and what became of the money."""
        order = timeline.order
        changed = timeline.first("orders", STATUS_CHANGED)
        when = f" at {_at(changed)}" if changed else ""
        text = (
            f"Order {order['id']} was cancelled{when} because no payment came in time ({PAYMENT_TIMEOUT_REASON}); "
            f"{created}. "
        )
        refunded = timeline.first("payments", PAYMENT_REFUNDED)
        if refunded is not None:
            decided = timeline.first("payments", PAYMENT_DECIDED)
            confirmed = f" at {_at(decided)}" if decided else ""
            return text + (
                f"Its payment was confirmed late{confirmed} and refunded at {_at(refunded)}: "
                "the customer was not charged."
            )
        if timeline.first("payments", PAYMENT_VOIDED) is not None:
            return text + "Payments had not charged it yet: its charge was voided, so it will never be taken."
        payment = timeline.first("payments", PAYMENT_DECIDED)
        if payment is None:
            return text + "No payment was recorded for it."
        if payment.detail.get("status") == "failed":
            reason = payment.detail.get("reason") or "no reason given"
            return text + f"Its payment failed later ({reason}) at {_at(payment)}: nothing was charged."
        applied = timeline.first("payments", EVENT_APPLIED, event_type=ORDER_CANCELLED.name)
        pending = "" if applied is None else " (payments has consumed the cancellation: see its log)"
        return text + (
            f"Its payment was confirmed at {_at(payment)} and is not refunded yet{pending}: payments refunds it "
            "when it consumes the order.cancelled event."
        )

    @staticmethod
    def _paid(timeline: OrderTimeline, created: str) -> str:
        order = timeline.order
        payment = timeline.first("payments", PAYMENT_DECIDED)
        changed = timeline.first("orders", STATUS_CHANGED)
        when = f" at {_at(changed)}" if changed else ""
        if payment is None:
            return f"Order {order['id']} was paid{when}, but no payment was recorded for it; {created}."
        return f"Order {order['id']} was paid: the payment was confirmed at {_at(payment)}; {created} and paid{when}."

    @staticmethod
    def _stuck(timeline: OrderTimeline) -> str:
        """Where a ``new`` order's saga stopped: the first step that has not happened."""
        created_event = timeline.first("outboxer", EVENT_PUBLISHED, EVENT_PENDING, event_type=ORDER_CREATED.name)
        if created_event is None:
            return "there is no order.created event for it in the orders outbox, so its payment was never requested."
        if created_event.event == EVENT_PENDING:
            if created_event.detail.get("attempts"):
                return (
                    f"its order.created event is still pending publication to Kafka (queued at "
                    f"{created_event.detail['queued_at']}){_failures(created_event)}. "
                    "Payments decides only once the event is published: check the broker and the outboxer."
                )
            return (
                f"its order.created event is pending publication to Kafka since {_at(created_event)} and the "
                "outboxer has not tried to publish it yet: check that the outboxer is running."
            )
        received = timeline.first("payments", EVENT_APPLIED)
        payment = timeline.first("payments", PAYMENT_DECIDED)
        if payment is None:
            if received is not None:
                return (
                    f"payments consumed its order.created event at {_at(received)} but recorded no payment "
                    "for it: see the payments consumer's log."
                )
            return (
                f"its order.created event was published at {_at(created_event)}, but payments has not consumed "
                "it yet, so there is no payment yet: the payments consumer is behind or not running, or parked "
                "the event as poison (GET /v1/ops/parked)."
            )
        if payment.detail.get("status") == "confirmed":
            decision = f"the payment was confirmed at {_at(payment)}"
        else:
            decision = f"the payment failed ({payment.detail.get('reason') or 'no reason given'}) at {_at(payment)}"
        payment_event = timeline.first("outboxer", EVENT_PUBLISHED, EVENT_PENDING, event_type="payment.")
        if payment_event is None:
            return f"{decision}, but no payment event for it is in the payments outbox."
        event_type = payment_event.detail.get("event_type")
        if payment_event.event == EVENT_PENDING:
            return (
                f"{decision}, but its {event_type} event is still pending publication to Kafka"
                f"{_failures(payment_event) or ' and the outboxer has not tried to publish it yet'}."
            )
        applied = timeline.first("orders", EVENT_APPLIED)
        if applied is None:
            return (
                f"{decision} and its {event_type} event was published at {_at(payment_event)}, but orders has not "
                "consumed it yet: the orders consumer is behind or not running, or parked the event as poison "
                "(GET /v1/ops/parked)."
            )
        return (
            f"{decision} and orders consumed the {event_type} event at {_at(applied)}, yet the order did not "
            "move: see the orders consumer's log."
        )


SYSTEM_PROMPT = """\
You are the operations assistant of goshop, an online shop. An operator asks about one order.
Answer in plain words, in a few sentences, using only the order's timeline below, and say so
when the timeline does not tell. Times are UTC.
How an order moves: the orders service writes the order (status new) and an order.created
event to its outbox in one transaction; the outboxer publishes outbox rows to Kafka, retrying
with backoff and keeping the last error; the payments consumer applies order.created, decides
the payment (confirmed, or failed with a reason) and queues payment.confirmed or payment.failed;
the outboxer publishes that; the orders consumer applies it and moves the order to paid or
cancelled. Nothing moves an order that is no longer new. An order still new after the payment
timeout is cancelled by orders with reason payment_timeout and an order.cancelled event;
payments then refunds a payment it confirmed for it (payment.refunded, payment status
refunded) or voids the charge if it had not made one. A consumer parks an event it cannot apply
on <topic>.dlq, where an operator can list and replay it."""


class OllamaExplainer:
    """Asks an Ollama server (``POST {url}/api/chat``, not streamed), with the
    order's timeline as the context of the operator's question."""

    source = "ollama"

    def __init__(self, url: str, model: str, timeout: float, temperature: float):
        outgoing.check_url(url, "OLLAMA_URL")
        self.endpoint = url.rstrip("/") + "/api/chat"
        self.model = model
        self.timeout = timeout
        self.temperature = temperature

    def chat_request(self, timeline: OrderTimeline, question: str | None) -> dict:
        user = f"{question or DEFAULT_QUESTION}\n\nTimeline of the order:\n\n{timeline.markdown()}"
        return {
            "model": self.model,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
            "stream": False,
            "options": {"temperature": self.temperature},
        }

    def explain(self, timeline: OrderTimeline, question: str | None = None) -> Answer:
        """Raises LlmUnavailable when Ollama cannot be reached, is slower than
        ``timeout`` (per connect and per read), fails, or answers nonsense."""
        body = json.dumps(self.chat_request(timeline, question)).encode()
        try:
            # Direct, never through HTTP(S)_PROXY: Ollama runs beside the shop,
            # and the timeline must not pass through a proxy on its way there.
            raw = outgoing.fetch(
                self.endpoint,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=self.timeout,
                max_bytes=MAX_ANSWER_BYTES,
                direct=True,
            )
        except outgoing.TooLarge:
            raise LlmUnavailable("ollama's answer is too large") from None
        except outgoing.UnexpectedAnswer as exc:
            raise LlmUnavailable(f"ollama answered HTTP {exc.status}") from None
        except urllib.error.HTTPError as exc:
            raise LlmUnavailable(f"ollama answered HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise LlmUnavailable(f"ollama did not answer within {self.timeout:g}s") from None
            raise LlmUnavailable(f"ollama unreachable: {exc.reason}") from None
        except TimeoutError:
            raise LlmUnavailable(f"ollama did not answer within {self.timeout:g}s") from None
        except (OSError, http.client.HTTPException) as exc:  # a reset, or a broken answer mid-read
            raise LlmUnavailable(f"ollama connection failed: {exc.__class__.__name__}") from None
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise LlmUnavailable("ollama's answer is not JSON") from None
        message = document.get("message") if isinstance(document, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str) or not content.strip():
            raise LlmUnavailable("ollama's answer has no message content")
        model = document.get("model")
        return Answer(content.strip(), self.source, model if isinstance(model, str) and model else self.model)


def make_explainer(settings) -> RulesExplainer | OllamaExplainer:
    """Ollama when ``OLLAMA_URL`` is set; the rules otherwise."""
    if settings.ollama_url:
        return OllamaExplainer(
            settings.ollama_url, settings.ollama_model, settings.ollama_timeout, settings.ollama_temperature
        )
    return RulesExplainer()
