"""The dev token command: the scopes it signs are ones the services check."""

import jwt
import pytest

from shared.cli import dev_secret, main
from shared.testing import TEST_JWT_SECRET


@pytest.fixture(autouse=True)
def _dev_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_JWT_SECRET", TEST_JWT_SECRET)


def test_a_token_carries_the_scopes_asked_for(capsys: pytest.CaptureFixture[str], tmp_path):
    main(["token", "--scope", "contacts:read support:write", "--data-dir", str(tmp_path)])
    claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    assert claims["scope"] == "contacts:read support:write"


def test_an_unknown_scope_is_refused(capsys: pytest.CaptureFixture[str], tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["token", "--scope", "contact:read support:write", "--data-dir", str(tmp_path)])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no token printed
    assert "unknown scope contact:read" in captured.err


def test_without_a_secret_no_token_is_signed_with_a_new_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path
):
    # Run outside the folder `make up` ran in, `crm token` made itself a new random secret
    # there and printed a token every running service refused (401, "Signature verification
    # failed").
    monkeypatch.delenv("CRM_JWT_SECRET")
    with pytest.raises(SystemExit) as exit_:
        main(["token", "--data-dir", str(tmp_path / ".crm-data")])
    assert "make up" in str(exit_.value.code) and "CRM_JWT_SECRET" in str(exit_.value.code)
    assert capsys.readouterr().out == ""  # no token printed
    assert not (tmp_path / ".crm-data").exists()  # and no secret invented


def test_a_token_is_signed_with_the_secret_crm_up_wrote(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path
):
    monkeypatch.delenv("CRM_JWT_SECRET")
    secret = dev_secret(tmp_path)  # what `crm up` writes
    main(["token", "--scope", "contacts:read", "--data-dir", str(tmp_path)])
    claims = jwt.decode(
        capsys.readouterr().out.strip(), secret, algorithms=["HS256"], issuer="crm-platform"
    )
    assert claims["scope"] == "contacts:read"
