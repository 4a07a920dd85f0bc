from datetime import timedelta

import jwt
import pytest

from shared.auth import ALL_SCOPES, mint_token
from shared.settings import AuthSettings

SETTINGS = AuthSettings(secret="a-test-secret-that-is-long-enough-for-hs256")


class TestMintToken:
    def test_carries_space_separated_scopes_and_expires(self):
        token = mint_token(
            SETTINGS,
            subject="ops",
            scopes=["contacts:read", "support:write"],
            ttl=timedelta(minutes=5),
        )
        claims = jwt.decode(
            token, SETTINGS.secret.get_secret_value(), algorithms=["HS256"], issuer=SETTINGS.issuer
        )
        assert claims["scope"] == "contacts:read support:write"
        assert claims["sub"] == "ops"
        assert claims["exp"] - claims["iat"] == 300

    def test_defaults_to_every_scope(self):
        claims = jwt.decode(
            mint_token(SETTINGS),
            SETTINGS.secret.get_secret_value(),
            algorithms=["HS256"],
            issuer=SETTINGS.issuer,
        )
        assert set(claims["scope"].split()) == set(ALL_SCOPES)
        assert "analytics:read" in claims["scope"]

    def test_another_secret_does_not_verify(self):
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(
                mint_token(SETTINGS),
                "another-secret-another-secret-12345",
                algorithms=["HS256"],
                issuer=SETTINGS.issuer,
            )
