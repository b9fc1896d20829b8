from __future__ import annotations

from pathlib import Path

import pytest

from mbuskit.errors import MBusError
from mbuskit.headend.config import ConfigError, load_config, parse_config, parse_duration

GOOD = """\
[headend]
name = "site-a"

[poll]
interval = "15m"
timeout = 1.5

[storage]
url = "sqlite:///tmp/x.db"

[http]
bind = "0.0.0.0:9000"
token = "s3cret-token"

[mqtt]
broker = "mqtt://127.0.0.1:1884"

[keys]
kam1 = "000102030405060708090A0B0C0D0E0F"

[[buses]]
name = "basement"
serial = "/dev/ttyUSB0"
baud = 2400

[[buses]]
name = "gw"
tcp = "10.0.0.5:10001"
baud = 9600
interval = "1m"

[[meters]]
name = "flat-1"
bus = "basement"
primary = 5
breaker = true

[[meters]]
bus = "gw"
secondary = "14839120"
fabrication = "55000001"
key = "kam1"
data = "additional"
"""


def test_good_config_parses() -> None:
    c = parse_config(GOOD)
    assert c.name == "site-a"
    assert c.poll.interval == 900.0 and c.poll.timeout == 1.5
    assert c.http.host == "0.0.0.0" and c.http.port == 9000 and c.http.token == "s3cret-token"
    assert c.mqtt is not None and c.mqtt.port == 1884
    assert c.keys["kam1"] == bytes(range(16))
    assert [b.kind for b in c.buses] == ["serial", "tcp"]
    m1, m2 = c.meters
    assert m1.address_kind == "primary" and m1.interval == 900.0 and m1.breaker
    # a meter inherits its bus's interval; enhanced address = secondary + fabrication number
    assert m2.name == "gw-14839120" and m2.interval == 60.0 and m2.address_kind == "enhanced"
    assert m2.data == "additional"


def test_defaults_bind_to_loopback() -> None:
    c = parse_config("")
    assert c.http.host == "127.0.0.1" and c.http.token is None
    assert c.storage.url.startswith("sqlite:///") and c.mqtt is None


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, path="h.toml")
    assert isinstance(info.value, MBusError)
    return info.value


@pytest.mark.parametrize(
    ("mutation", "line", "words"),
    [
        (("primary = 5", "primary = 251"), 35, "0-250"),
        (("baud = 9600", "baud = 1234"), 29, "unsupported baud"),
        (('bus = "gw"', 'bus = "attic"'), 39, "no [[buses]] named 'attic'"),
        (('key = "kam1"', 'key = "nope"'), 42, "no key 'nope'"),
        (('interval = "15m"', 'interval = "soon"'), 5, "not a positive duration"),
        (('data = "additional"', 'data = "all"'), 43, "standard"),
        (('token = "s3cret-token"', 'token = "short"'), 13, "at least 8"),
        (('baud = 2400', 'baud = 2400\ncolour = "red"'), 25, "unknown key 'colour'"),
        (('secondary = "14839120"', 'secondary = "1483912X"'), 40, "8 BCD digits"),
        (("primary = 5", "primary = true"), 35, "an integer"),
        (('url = "sqlite:///tmp/x.db"', 'url = "sqlite:///tmp/x.db"\nmax_queue = 0'), 10,
         "at least 1"),
        (('url = "sqlite:///tmp/x.db"', 'url = "sqlite:///tmp/x.db"\nspool = " "'), 10,
         "directory"),
    ],
)
def test_bad_config_names_line_and_reason(mutation: tuple[str, str], line: int,
                                          words: str) -> None:
    old, new = mutation
    assert old in GOOD
    err = _error(GOOD.replace(old, new, 1))
    assert err.line == line, str(err)
    assert words in str(err)
    assert f"line {line}" in str(err) and "h.toml" in str(err)


def test_syntax_error_names_line() -> None:
    err = _error('[poll]\ninterval = "15m"\ntimeout = = 3\n')
    assert err.line == 3 and "TOML syntax" in str(err)


def test_both_or_no_address() -> None:
    base = '[[buses]]\nname = "b"\ntcp = "h:1"\n[[meters]]\nbus = "b"\n'
    assert "exactly one of primary" in str(_error(base))
    err = _error(base + 'primary = 1\nsecondary = "12345678"\n')
    assert "exactly one of primary" in str(err) and err.line == 4


def test_duplicate_addresses_refused() -> None:
    text = ('[[buses]]\nname = "b"\ntcp = "h:1"\n[[meters]]\nbus = "b"\nprimary = 1\n'
            '[[meters]]\nbus = "b"\nname = "x"\nprimary = 1\n')
    err = _error(text)
    assert "has this address" in str(err) and err.line == 10


def test_bus_needs_exactly_one_port() -> None:
    assert "exactly one of serial" in str(_error('[[buses]]\nname = "b"\n'))
    err = _error('[[buses]]\nname = "b"\ntcp = "nohost"\n')
    assert "HOST:PORT" in str(err) and err.line == 3


def test_token_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MBUS_TOKEN_TEST", "from-the-env-123")
    c = parse_config('[http]\ntoken_env = "MBUS_TOKEN_TEST"\n')
    assert c.http.token == "from-the-env-123"
    monkeypatch.delenv("MBUS_TOKEN_TEST")
    assert "not set" in str(_error('[http]\ntoken_env = "MBUS_TOKEN_TEST"\n'))


def test_load_config_file(tmp_path: Path) -> None:
    p = tmp_path / "headend.toml"
    p.write_text(GOOD)
    assert len(load_config(p).meters) == 2
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_parse_duration() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2h") == 7200.0
    assert parse_duration(30) == 30.0
    assert parse_duration("later") is None
    assert parse_duration(True) is None


def test_documented_example_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = (Path(__file__).parent.parent / "docs" / "headend.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("MBUS_TOKEN", "a-long-enough-token")
    c = parse_config(example)
    assert [b.name for b in c.buses] == ["basement", "gateway"]
    assert c.meters[1].address_kind == "enhanced" and c.meters[1].interval == 60.0
    assert c.storage.url.startswith("sqlite:///") and c.mqtt is not None


def test_spool_beside_the_sqlite_database_unless_named() -> None:
    cfg = parse_config(GOOD)
    assert cfg.storage.spool_dir == "tmp/x.db.spool" and cfg.storage.max_queue == 10_000
    named = parse_config(GOOD.replace('url = "sqlite:///tmp/x.db"',
                                      'url = "postgresql://db/x"\nspool = "/var/spool/mbus"\n'
                                      "max_queue = 50"))
    assert named.storage.spool_dir == "/var/spool/mbus" and named.storage.max_queue == 50
    pg = parse_config(GOOD.replace('url = "sqlite:///tmp/x.db"', 'url = "postgresql://db/x"'))
    assert pg.storage.spool_dir is None
