"""Helpers for money tests (the `products` and `active_customer` fixtures live in tests/conftest.py)."""


def post(api, path, body=None, key=None):
    import uuid

    return api.post(path, body or {}, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))
