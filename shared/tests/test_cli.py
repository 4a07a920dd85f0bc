"""The dev token command: the scopes it signs are ones the services check."""

import jwt
import pytest

from shared.cli import main
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
