"""Search relevance: one 0-1 score in every mode, a cut-off under which nothing is a match (so a
query nothing answers gets an empty list, and the workflow's research step and @codebase chat get no
chunk), and an index of source and documentation only. Against a real Chroma in the test data dir and
the bundled embedding model (the offline default), on a small project of ordinary code."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from rag import services
from rag.config import rag_settings
from rag.models import IndexedFile

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(180)]

FILES = {
    "shop/shipping.py": '''"""Orders and their delivery."""


def compute_shipping_cost(weight_kg, distance_km):
    """Price of sending a parcel: a base fee plus a rate per kilogram and per kilometre."""
    base_fee = 4.5
    return base_fee + 0.8 * weight_kg + 0.05 * distance_km


def normalize_postcode(postcode):
    """Postcodes compared without spaces, in capitals."""
    return postcode.replace(" ", "").upper()
''',
    "shop/cart.py": '''"""The shopping cart kept in the session."""


class Cart:
    """Items a customer means to buy, with their quantities."""

    def __init__(self, session):
        self.session = session
        self.items = session.setdefault("cart", {})

    def add(self, product_id, quantity=1):
        """Put a product in the cart, or raise its quantity when it is there already."""
        self.items[product_id] = self.items.get(product_id, 0) + quantity

    def remove(self, product_id):
        self.items.pop(product_id, None)

    def total(self, prices):
        """Sum of price times quantity over the items."""
        return sum(prices[product_id] * quantity for product_id, quantity in self.items.items())
''',
    "shop/payments.py": '''"""Card payments through the payment provider."""

import hmac
import hashlib


class PaymentDeclined(Exception):
    """The provider refused the charge."""


def charge_card(client, token, amount_cents, currency="EUR"):
    """Charge a card token; raises PaymentDeclined when the provider refuses."""
    reply = client.post("/charges", {"source": token, "amount": amount_cents, "currency": currency})
    if reply["status"] != "succeeded":
        raise PaymentDeclined(reply.get("failure_message", "declined"))
    return reply["id"]


def verify_webhook_signature(payload, signature, secret):
    """Check that a webhook call really comes from the provider (HMAC-SHA256 of the body)."""
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
''',
    "shop/users.py": '''"""Customer accounts."""

import re

EMAIL = re.compile(r"^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$")


def is_valid_email(address):
    """Whether an email address looks deliverable."""
    return bool(EMAIL.match(address.strip().lower()))


def display_name(first_name, last_name):
    return f"{first_name} {last_name[:1]}." if last_name else first_name
''',
    "shop/invoices.py": '''"""Invoices sent after an order."""

from decimal import Decimal, ROUND_HALF_UP


def invoice_total(lines, vat_rate=Decimal("0.21")):
    """Net amount of the lines plus value added tax, rounded to cents."""
    net = sum(Decimal(str(line["price"])) * line["quantity"] for line in lines)
    return (net * (1 + vat_rate)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
''',
    "README.md": "# Shop\n\nA small web shop: a cart, card payments, shipping costs and invoices.\n"
                 "Run it with `python -m shop`.\n",
}
# What the index leaves out by default: translation catalogues, data, lock files, minified bundles.
NOT_INDEXED = {
    "shop/locale/fr/LC_MESSAGES/django.po": 'msgid "Shipping cost"\nmsgstr "Frais de port"\n',
    "shop/locale/shop.pot": 'msgid "Shipping cost"\nmsgstr ""\n',
    "data/prices.csv": "product,price\nmug,9.5\n",
    "package-lock.json": '{"lockfileVersion": 3}\n',
    "poetry.lock": "[[package]]\nname = \"requests\"\n",
    "static/app.min.js": "function a(){return 1}\n",
}


@pytest.fixture
def shop(settings, set_config):
    """A small shop project in the workspace, indexed with the bundled embedder into its own collection."""
    root = Path(settings.WORKSPACE_ROOT) / f"shop-{uuid.uuid4().hex[:8]}"
    for name, text in {**FILES, **NOT_INDEXED}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    set_config({"rag": {"collection": f"test-{uuid.uuid4().hex[:12]}", "chroma_url": ""},
                "embeddings": {"provider": "embedded"}})
    services.index_path(rel(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def rel(path: Path) -> str:
    return path.relative_to(settings.WORKSPACE_ROOT).as_posix()


def search(client, **body):
    response = client.post("/rag/search", json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


def test_a_nonsense_search_returns_no_match_in_any_mode(client, shop):
    for mode in ("hybrid", "vector", "lexical"):
        assert search(client, query="zzqxv nothing", mode=mode) == [], mode
        assert search(client, query="blorft snazzle wibbet", mode=mode) == [], mode


def test_an_unrelated_task_gets_no_chunk_from_retrieve(shop):
    assert services.retrieve("Write a factorial function", 5) == []
    assert services.retrieve("Write a function that checks whether a string is a palindrome", 5) == []
    # while a task about the project's own code gets it
    chunks = services.retrieve("Write a function like compute_shipping_cost that adds a fee for fragile parcels", 5)
    assert chunks and "compute_shipping_cost" in chunks[0]["symbol"]


def test_questions_about_the_code_find_it_in_every_mode(client, shop):
    questions = {
        "how much does it cost to send a parcel": "compute_shipping_cost",
        "check the signature of a webhook": "verify_webhook_signature",
        "total with value added tax": "invoice_total",
    }
    for query, symbol in questions.items():
        for mode in ("hybrid", "vector", "lexical"):
            hits = search(client, query=query, mode=mode)
            assert hits and symbol in hits[0]["symbol"], (query, mode, hits[:1])


def test_scores_are_within_0_and_1_and_ordered_in_every_mode(client, shop):
    for query in ("shipping cost", "charge a card and raise when declined", "Cart add remove total",
                  "email address validation", "zzqxv nothing"):
        for mode in ("hybrid", "vector", "lexical"):
            hits = search(client, query=query, mode=mode, limit=20, min_score=0)
            scores = [hit["score"] for hit in hits]
            assert all(0 <= score <= 1 for score in scores), (query, mode, scores)
            assert scores == sorted(scores, reverse=True), (query, mode, scores)


def test_a_query_of_the_exact_identifier_scores_1_lexically_and_high_in_hybrid(client, shop):
    assert search(client, query="verify_webhook_signature", mode="lexical")[0]["score"] == 1.0
    hit = search(client, query="verify_webhook_signature")[0]
    assert "verify_webhook_signature" in hit["symbol"] and hit["score"] >= 0.6


def test_the_cut_off_is_a_setting_and_a_request_can_lower_or_raise_it(client, shop, set_config):
    query = "how much does it cost to send a parcel"
    hits = search(client, query=query, limit=20)
    assert hits and all(hit["score"] >= rag_settings().min_score for hit in hits)
    everything = search(client, query=query, limit=20, min_score=0)
    assert len(everything) > len(hits)
    assert search(client, query=query, min_score=1) == []
    set_config({"rag": {"min_score": 0.99}})
    assert services.retrieve(query, 5) == []
    set_config({"rag": {"min_score": 0}})
    assert len(services.retrieve(query, 5)) == min(5, len(everything))


@pytest.mark.parametrize("body", [{"query": "x", "min_score": -0.1}, {"query": "x", "min_score": 1.5},
                                  {"query": "x", "min_score": "high"}])
def test_min_score_out_of_range_is_400(client, body):
    response = client.post("/rag/search", json.dumps(body), content_type="application/json")
    assert response.status_code == 400 and "min_score" in response.json()["detail"]


def test_translation_catalogues_data_and_lock_files_are_not_indexed_by_default(shop):
    indexed = {path.removeprefix(rel(shop) + "/") for path in IndexedFile.objects.values_list("path", flat=True)}
    assert indexed == set(FILES)


def test_what_is_indexed_is_configurable(shop, set_config):
    set_config({"rag": {"skip_suffixes": [".csv"], "skip_names": []}})
    services.index_path(rel(shop))
    indexed = {path.removeprefix(rel(shop) + "/") for path in IndexedFile.objects.values_list("path", flat=True)}
    # the lists no longer skip them; .pot and .po are not source suffixes, .lock not one either
    assert indexed == set(FILES) | {"package-lock.json", "static/app.min.js"}
    set_config({"rag": {"index_suffixes": [], "skip_suffixes": [".csv"]}})
    services.index_path(rel(shop))
    indexed = {path.removeprefix(rel(shop) + "/") for path in IndexedFile.objects.values_list("path", flat=True)}
    assert indexed == set(FILES) | {"package-lock.json", "static/app.min.js", "shop/locale/shop.pot",
                                    "shop/locale/fr/LC_MESSAGES/django.po"}
