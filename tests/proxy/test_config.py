"""Config: YAML into typed structs; every error names the key, the line, expected and found."""
import subprocess
import sys

import pytest

from gateway import ROOT
from proxy.config import ConfigError, parse_config

GOOD = """\
server:
  port: 9090
  workers: 2
upstream:
  connect_timeout_s: 2
keys:
  - key: ${APP_KEY}
    id: app
models:
  - name: fast
    provider: openai
    model: gpt-4o-mini
    api_key: ${OPENAI_KEY:-fallback}
"""


def test_valid_config_with_env_interpolation():
    cfg = parse_config(GOOD, env={"APP_KEY": "sk-app"})
    assert cfg.server.port == 9090 and cfg.server.workers == 2
    assert cfg.keys[0].key == "sk-app" and cfg.keys[0].id == "app"
    assert cfg.models[0].model == "gpt-4o-mini" and cfg.models[0].api_key == "fallback"
    assert cfg.upstream.connect_timeout_s == 2.0


@pytest.mark.parametrize("text, expected", [
    ("server:\n  port: abc\n", "line 2: server.port: expected `int`, got `str`"),
    ("server:\n  prot: 1\n", "line 2: server.prot: unknown key"),
    ("models:\n  - name: x\n    api_key: ${MISSING_VAR}\n", "line 3: models[0].api_key: environment variable MISSING_VAR is not set"),
    ("models:\n  - provider: openai\n", "line 2: models[0]: missing required key `name`"),
    ("models:\n  - name: a\n    base_url: ftp://x\n", "line 3: models[0].base_url: expected an http:// or https:// URL, found 'ftp://x'"),
    ("models:\n  - name: a\n    provider: nosuch\n", "line 3: models[0].provider: unknown provider 'nosuch'"),
    ("server: {port: 99999}\n", "server.port: expected a port between 1 and 65535, found 99999"),
    ("- just\n- a list\n", "expected a mapping of keys at the top level, found list"),
    ("keys:\n  - key: a\n  - key: a\n", "line 3: keys[1].key: the same key is listed twice"),
    ("models: [\n", "not valid YAML"),
])
def test_errors_name_key_line_expected_and_found(text, expected):
    with pytest.raises(ConfigError) as exc:
        parse_config(text, source="faregate.yaml", env={})
    assert expected in str(exc.value)
    assert str(exc.value).startswith("faregate.yaml")


def test_cli_reports_config_error_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: eighty\n")
    r = subprocess.run([sys.executable, "-m", "proxy", "serve", "--config", str(bad)], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert f"{bad}, line 2: server.port" in r.stderr and "Traceback" not in r.stderr


def test_cli_without_models_explains_what_to_do(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if not k.endswith("_API_KEY")}
    r = subprocess.run([sys.executable, "-m", "proxy", "serve"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--demo" in r.stderr


def test_provider_keys_in_environment_enable_catalog_models():
    from proxy.config import config_from_env
    cfg = config_from_env({"ANTHROPIC_API_KEY": "sk-ant-x"})
    assert cfg.models and {m.provider for m in cfg.models} == {"anthropic"}
    assert config_from_env({}).models == []
