"""Configuration from environment variables.

Platform-wide settings (the broker, the JWT secret) have one name for every service;
what belongs to one service (its database, its port) carries the service's prefix,
e.g. ``CONTACTS_DATABASE_URL``.
"""

import hashlib
import hmac
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """``KAFKA_*``: how every service reaches the broker."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # The embedded broker rejects InitProducerId, so idempotence is opt-in (on for Apache Kafka).
    enable_idempotence: bool = False
    # The embedded broker answers a fetch only when this wait expires: keep it low there.
    fetch_max_wait_ms: int = Field(default=10, ge=0, le=10_000)
    # The embedded broker answers a group join only after half the session timeout: 1000 there.
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    # Create the platform's topics at start-up (off where a deploy job owns them).
    create_topics: bool = True
    topic_partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)


class AuthSettings(BaseSettings):
    """``CRM_JWT_*``: bearer-token verification, the same for every service.

    Either a shared secret (HS256, the default; ``crm token`` mints dev tokens with it) or a
    public key: ``public_key`` (PEM) or ``jwks_url`` (the identity provider's key set, fetched
    and cached; keys picked by the token's ``kid``) with an RS256/ES256 ``algorithm``, and
    ``audience`` where the provider's tokens name the API they are for.
    """

    model_config = SettingsConfigDict(env_prefix="CRM_JWT_", extra="ignore")

    secret: SecretStr | None = None
    algorithm: Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256"] = "HS256"
    public_key: str | None = None
    jwks_url: str | None = None
    issuer: str = "crm-platform"
    # The platform's name in an identity provider's tokens (``aud``): set, a token must name
    # it; unset, a token naming any audience is refused (it was meant for another API).
    audience: str | None = None

    @model_validator(mode="after")
    def _key_for_the_algorithm(self) -> "AuthSettings":
        # No default: a service refuses to start without a key from the environment.
        if self.algorithm.startswith("HS"):
            if self.secret is None:
                raise ValueError(f"CRM_JWT_SECRET is required for {self.algorithm}")
            # A shorter secret can be guessed offline from any one token, and then any token
            # forged (RFC 7518 3.2: at least the hash's size). PyJWT only warns.
            minimum = int(self.algorithm[2:]) // 8
            if len(self.secret.get_secret_value().encode()) < minimum:
                raise ValueError(
                    f"CRM_JWT_SECRET must be at least {minimum} bytes for {self.algorithm}"
                    " (e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))')"
                )
        elif not (self.public_key or self.jwks_url):
            raise ValueError(
                f"CRM_JWT_PUBLIC_KEY or CRM_JWT_JWKS_URL is required for {self.algorithm}"
            )
        return self

    def derived_key(self, purpose: bytes) -> bytes:
        """A key for one ``purpose`` (signing tracking links, keying stand-in ids), derived from
        the shared secret: with HS-signed tokens a service needs no further secret (none in
        the repo). With public-key tokens there is none: ``require_without_jwt_secret``."""
        if self.secret is None:
            raise ValueError("no CRM_JWT_SECRET to derive a key from")
        return hmac.new(self.secret.get_secret_value().encode(), purpose, hashlib.sha256).digest()


def require_without_jwt_secret(value: object | None, auth: AuthSettings, variable: str) -> None:
    """A service setting that stands in for the JWT secret (a key derived from it, a token
    minted with it) is required when tokens are verified by a public key: refused at start-up
    rather than a failure of every request that needs it."""
    if value is None and auth.secret is None:
        raise ValueError(
            f"{variable} is required when tokens are verified by a public key"
            " (there is no CRM_JWT_SECRET to stand in for it)"
        )


SECRET_MIN_BYTES = 32


def require_secret_length(value: SecretStr | None, variable: str) -> None:
    """A key of a service's own (tracking links, stand-in ids) is at least as long as the JWT
    secret must be: a short one can be found by trying keys on one genuine value signed or
    keyed with it, and then any value forged."""
    if value is not None and len(value.get_secret_value().encode()) < SECRET_MIN_BYTES:
        raise ValueError(
            f"{variable} must be at least {SECRET_MIN_BYTES} bytes"
            " (e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )


class ServiceSettings(BaseSettings):
    """What one service needs; subclasses set ``env_prefix`` (``CONTACTS_``, ...)."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    database_url: str
    # PostgreSQL only: the schema this service owns when several share one database.
    database_schema: str | None = None
    # Connections per process (PostgreSQL): replicas x workers x (pool + overflow) must stay
    # under the server's max_connections.
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_max_overflow: int = Field(default=20, ge=0, le=200)
    log_level: str = "INFO"
    # The largest request body read: a batch of 1,000 touches or a 10,000-row import is a few
    # MB, and a body is held in memory whole while it is parsed.
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Worker processes for `crm serve`; each runs a relay (one publishes) and consumers.
    workers: int = Field(default=1, ge=1, le=64)
    # Outbox relay. Rows per read-send-mark round: in a batch ingest the relay shares its
    # process with the API that fills the outbox, and with 500 it fell 16,000 rows behind;
    # with 2,000 a round's fixed costs (its queries, the wait for acks) come four times
    # rarer, and end-to-end batch ingest rose by about a seventh (docs/reliability.md).
    relay_batch_size: int = Field(default=2000, ge=1, le=10_000)
    relay_poll_interval_s: float = Field(default=0.5, gt=0)
    relay_lease_s: float = Field(default=10.0, gt=0)
    # How long published outbox rows are kept (to look into, or to re-send by hand) before the
    # relay deletes them.
    relay_retention_s: float = Field(default=86_400.0, gt=0)
    # Consumers
    consumer_max_attempts: int = Field(default=3, ge=1)
    # Records per fetch for each subscription (a partition's share is one transaction). Larger
    # batches spread a fetch's and a transaction's fixed cost: analytics ingested 4,100-4,400
    # events/s with 500, 5,300-5,500 with 2,000 (and no more with 5,000).
    consumer_batch_size: int = Field(default=2000, ge=1)
    # How long an applied event's id is kept to recognise a redelivery. Longer than the topics'
    # retention: an event still on a topic can be delivered again (a group reset, a replay).
    consumer_dedupe_retention_s: float = Field(default=30 * 86_400.0, gt=0)
    # The Kafka consumer group (crm.<service> when unset). Offsets belong to the group, not the
    # database: a fresh database under an old group starts where that group left off, so a
    # read model built anew beside the old one (or a test's) takes a group of its own.
    consumer_group: str | None = None
    run_consumers: bool = True
    run_relay: bool = True
    # End the process when the relay or the consumer loop ends before shutdown (they retry
    # every error themselves, so that is a bug), for whatever supervises it to start it anew:
    # Docker's restart policy, `crm up`, uvicorn's for a worker. `crm serve` turns it on;
    # off, /healthz fails instead (a Kubernetes liveness probe restarts the pod).
    exit_when_a_worker_ends: bool = False


def default_consumer_group(service: str) -> str:
    """The consumer group of a service whose ``consumer_group`` is unset."""
    return f"crm.{service}"
