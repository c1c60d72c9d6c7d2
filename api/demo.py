"""Demo data of the api app: one write key with a published value, so the demo's API can be tried at once
(``make demo`` prints it). Like the demo's passwords it is public: never seed it outside the demo."""

from __future__ import annotations

from api.keys import key_hash
from api.models import ApiKey, ApiScope

DEMO_API_KEY = "ck_de000001_demo-key-published-in-the-readme-never-use-outside-the-demo"
DEMO_API_KEY_NAME = "Demo integration"


def seed_api_keys() -> int:
    prefix = DEMO_API_KEY.split("_")[1]
    _, created = ApiKey.objects.get_or_create(
        prefix=prefix, defaults={"name": DEMO_API_KEY_NAME, "key_hash": key_hash(DEMO_API_KEY), "scope": ApiScope.WRITE}
    )
    return int(created)
