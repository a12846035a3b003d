"""What the command line must be told before it runs a stranger's code or opens the
server to the network: `--trust-remote-code` for a run folder that asks for it,
`--api-key` or `--insecure-no-auth` for a server bound beyond loopback."""

from __future__ import annotations

import pytest
import yaml

from tasktune.cli.main import _loopback, main
from tasktune.config import config_to_dict, load_config
from tasktune.recipes import refuse_remote_code


def _run_folder(path, trust: bool):
    path.mkdir()
    cfg = load_config(None, [f"trust_remote_code={str(trust).lower()}", f"output_dir={path}"])
    (path / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path


@pytest.mark.parametrize("command", [
    ["eval"],
    ["predict", "--input", "in.jsonl", "--output", "out.jsonl"],
    ["chat"],
    ["serve"],
    ["export", "--out", "exported"],
])
def test_a_run_folder_that_trusts_remote_code_is_refused_without_the_flag(tmp_path, capsys, command):
    run = _run_folder(tmp_path / "downloaded", trust=True)
    assert main([*command, "--run", str(run)]) == 1
    err = capsys.readouterr().err
    assert "--trust-remote-code" in err and str(run / "config.yaml") in err and "Traceback" not in err


def test_the_flag_or_a_run_that_does_not_ask_passes_the_check(tmp_path):
    trusting = _run_folder(tmp_path / "trusting", trust=True)
    plain = _run_folder(tmp_path / "plain", trust=False)
    refuse_remote_code([trusting, plain], [], allowed=True)
    refuse_remote_code([plain], [], allowed=False)
    with pytest.raises(ValueError, match="--trust-remote-code"):
        refuse_remote_code([plain, trusting], [], allowed=False)


def test_an_override_that_turns_it_on_needs_the_flag_too(tmp_path):
    plain = _run_folder(tmp_path / "plain", trust=False)
    with pytest.raises(ValueError, match="--trust-remote-code"):
        refuse_remote_code([plain], ["trust_remote_code=true"], allowed=False)


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.com", False),
])
def test_loopback_hosts(host, loopback):
    assert _loopback(host) is loopback


def test_serving_beyond_loopback_without_a_key_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TASKTUNE_API_KEY", raising=False)
    run = _run_folder(tmp_path / "run", trust=False)
    assert main(["serve", "--run", str(run), "--host", "0.0.0.0"]) == 1
    err = capsys.readouterr().err
    assert "--api-key" in err and "--insecure-no-auth" in err and "Traceback" not in err


def test_an_empty_api_key_is_no_key(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TASKTUNE_API_KEY", "")
    run = _run_folder(tmp_path / "run", trust=False)
    assert main(["serve", "--run", str(run), "--host", "0.0.0.0", "--api-key", ""]) == 1
    assert "--insecure-no-auth" in capsys.readouterr().err


def test_a_queue_must_hold_a_request(tmp_path, capsys):
    run = _run_folder(tmp_path / "run", trust=False)
    assert main(["serve", "--run", str(run), "--max-queue", "0"]) == 1
    assert "--max-queue 0" in capsys.readouterr().err
