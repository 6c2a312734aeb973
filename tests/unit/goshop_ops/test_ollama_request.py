"""What the Ollama explainer sends, and what it refuses to be configured with."""

import pytest

from goshop_devtools.settings import settings_of
from goshop_ops.explain import DEFAULT_QUESTION, OllamaExplainer, RulesExplainer, make_explainer
from goshop_ops.timeline import OrderTimeline

ORDER = {
    "id": "9a0e5b7c-1111-4222-8333-944445555666",
    "user_id": "u",
    "amount_cents": 1,
    "currency": "RUB",
    "status": "new",
    "reason": None,
    "created_at": "2026-11-25T06:28:27.249Z",
    "updated_at": "2026-11-25T06:28:27.249Z",
}


def test_the_chat_request_is_ollamas_non_streamed_chat_with_the_timeline_as_context():
    explainer = OllamaExplainer("http://ollama:11434/", "qwen2.5:0.5b", 5.0, 0.3)
    timeline = OrderTimeline(ORDER, ())
    body = explainer.chat_request(timeline, None)
    assert explainer.endpoint == "http://ollama:11434/api/chat"
    assert body["model"] == "qwen2.5:0.5b"
    assert body["stream"] is False
    assert body["options"] == {"temperature": 0.3}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    user = body["messages"][1]["content"]
    assert user.startswith(DEFAULT_QUESTION)
    assert user.endswith(timeline.markdown())


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ollama:11434", "ftp://ollama", "http://"])
def test_an_ollama_url_that_is_not_http_is_refused(url):
    with pytest.raises(ValueError, match="OLLAMA_URL"):
        OllamaExplainer(url, "m", 1.0, 0.2)


def test_without_ollama_url_the_rules_answer():
    settings = settings_of({}, environ={})
    assert isinstance(make_explainer(settings), RulesExplainer)
    with_ollama = settings_of({}, environ={"OLLAMA_URL": "http://127.0.0.1:11434", "OLLAMA_MODEL": "llama3.2"})
    explainer = make_explainer(with_ollama)
    assert isinstance(explainer, OllamaExplainer)
    assert (explainer.model, explainer.timeout, explainer.temperature) == ("llama3.2", 30.0, 0.2)
