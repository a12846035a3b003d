"""tasktune.config: YAML + overrides -> frozen RunConfig, every problem reported at once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from tasktune.config import ConfigError, RunConfig, TrainConfig, config_to_dict, field_docs, load_config
from tasktune.config.load import _UniqueKeys

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load_and_equal_the_dataclass_defaults():
    cfg = load_config()
    assert cfg == RunConfig()
    assert cfg.train.max_steps == 300 and cfg.encoding.system_prompt == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]


def test_overrides_apply_on_top_of_the_file(tmp_path):
    path = _write(tmp_path, "train:\n  max_steps: 50\n  lr: 1.0e-3\n")
    cfg = load_config(path, ["train.max_steps=7", "data.arithmetic.digits=[2, 3]", "eval.base=false"])
    assert cfg.train.max_steps == 7  # the override wins over the file
    assert cfg.train.lr == 1e-3  # untouched file value kept
    assert cfg.data.arithmetic.digits == (2, 3)  # YAML list -> the declared tuple
    assert cfg.eval.base is False


def test_yaml_scalars_are_coerced_to_the_declared_type(tmp_path):
    # YAML 1.1 reads 2e-3 (no dot) as a string, and ints where floats are declared.
    cfg = load_config(_write(tmp_path, "train:\n  lr: 2e-3\n  max_grad_norm: 2\n"))
    assert cfg.train.lr == pytest.approx(2e-3) and isinstance(cfg.train.lr, float)
    assert cfg.train.max_grad_norm == 2.0 and isinstance(cfg.train.max_grad_norm, float)


def test_unknown_key_suggests_the_nearest_name(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key train\.'max_step'; did you mean train\.'max_steps'\?"):
        load_config(None, ["train.max_step=7"])
    with pytest.raises(ConfigError, match=r"unknown key 'trian'; did you mean 'train'\?"):
        load_config(_write(tmp_path, "trian:\n  max_steps: 3\n"))


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.max_step=7", "eval.max_example=3", "train.batch_size=abc"])
    err = info.value
    assert isinstance(err, ValueError)  # one exception type for callers that catch ValueError
    assert len(err.problems) == 3
    msg = str(err)
    assert "3 problem(s)" in msg
    assert "did you mean train.'max_steps'" in msg
    assert "did you mean eval.'max_examples'" in msg
    assert "train.batch_size: expected int, got str 'abc'" in msg


def test_wrong_type_names_the_field_and_value():
    with pytest.raises(ConfigError, match=r"train\.max_steps: expected int, got str 'many'"):
        load_config(None, ["train.max_steps=many"])
    with pytest.raises(ConfigError, match=r"train\.max_steps: expected int, got bool True"):
        load_config(None, ["train.max_steps=true"])  # bool is not an int here
    with pytest.raises(ConfigError, match=r"data\.arithmetic\.digits: expected 2 values"):
        load_config(None, ["data.arithmetic.digits=[1, 2, 3]"])
    with pytest.raises(ConfigError, match=r"expected a mapping of TrainConfig fields"):
        load_config(None, ["train=5"])


def test_bad_literal_lists_choices_and_suggests_one():
    with pytest.raises(ConfigError, match=r"train\.schedule: 'cosin' is not one of .*'cosine'.*did you mean 'cosine'"):
        load_config(None, ["train.schedule=cosin"])
    with pytest.raises(ConfigError, match=r"encoding\.overlong: 'chop' is not one of 'truncate', 'drop', 'error'"):
        load_config(None, ["encoding.overlong=chop"])


def test_cross_field_checks():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.batch_size=6", "train.grad_accum=4", "data.arithmetic.ops={'%': 1}"])
    msg = str(info.value)
    assert "train.batch_size (6) must be a positive multiple of train.grad_accum (4)" in msg
    assert "unknown operation(s) ['%']" in msg
    with pytest.raises(ConfigError, match=r"data\.file\.path: required"):
        load_config(None, ["data.task=file"])
    for layers in ("0", "[]", "[-1, 3]"):
        with pytest.raises(ConfigError, match=r"adapter\.lora\.layers: a count of last blocks >= 1"):
            load_config(None, [f"adapter.lora.layers={layers}"])
    assert load_config(None, ["adapter.lora.layers=[3, 1]"]).adapter.lora.layers == [3, 1]
    with pytest.raises(ConfigError, match=r"train\.stop_at: needs evaluations during training; set eval\.every"):
        load_config(None, ["train.stop_at=0.9"])
    with pytest.raises(ConfigError, match=r"train\.stop_at: an exact match within \(0, 1\]"):
        load_config(None, ["train.stop_at=99", "eval.every=10", "eval.metric=exact_match"])
    with pytest.raises(ConfigError, match=r"train\.stop_at: exact match within \(0, 1\] \(e\.g\. 0\.99\) or ROUGE/BLEU within \(0, 100\]"):
        load_config(None, ["train.stop_at=150", "eval.every=10"])
    assert load_config(None, ["train.stop_at=40", "eval.every=10", "eval.metric=rouge-l"]).train.stop_at == 40
    with pytest.raises(ConfigError, match=r"train\.adam_beta2: must be within \[0, 1\)"):
        load_config(None, ["train.adam_beta2=1.0"])
    with pytest.raises(ConfigError, match=r"generate: temperature must be > 0"):
        load_config(None, ["generate.do_sample=true", "generate.temperature=0"])


def test_malformed_override_and_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"override 'train\.max_steps': expected key=value"):
        load_config(None, ["train.max_steps"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "train: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))


def test_a_section_written_twice_is_refused_not_silently_replaced(tmp_path):
    """PyYAML keeps the last of two equal keys: a second `train:` would drop the first."""
    text = "train:\n  max_steps: 3\nencoding:\n  template: chatml\ntrain:\n  lr: 0.1\n"
    with pytest.raises(ConfigError, match=r"the key 'train' is written twice in one mapping \(first on line 1\)"):
        load_config(_write(tmp_path, text))
    with pytest.raises(ConfigError, match=r"the key 'lr' is written twice"):
        load_config(_write(tmp_path, "train:\n  lr: 0.1\n  lr: 0.2\n"))
    with pytest.raises(ConfigError, match=r"the key 'r' is written twice in one mapping \(first on line 2\)"):
        load_config(_write(tmp_path, "adapter:\n  lora: {r: 8, r: 16}\n"))  # one line, a flow mapping
    merged = "base: &b {max_steps: 3}\ntrain:\n  <<: *b\n  lr: 0.1\n"  # a merge key is not a second key
    assert yaml.load(merged, Loader=_UniqueKeys)["train"] == {"max_steps": 3, "lr": 0.1}


def test_missing_file_raises_file_not_found(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(missing)


def test_config_to_dict_round_trips_through_overrides():
    cfg = load_config(None, ["data.arithmetic.digits=[2, 4]"])
    plain = config_to_dict(cfg)
    assert plain["data"]["arithmetic"]["digits"] == [2, 4]
    assert load_config(None, [f"data.arithmetic.digits={plain['data']['arithmetic']['digits']}"]) == cfg


def _sections(cls: type) -> list[type]:
    """``cls`` and every config dataclass nested in it, depth first."""
    import typing

    found = [cls]
    for f in dataclasses.fields(cls):
        for tp in (typing.get_type_hints(cls)[f.name], *typing.get_args(typing.get_type_hints(cls)[f.name])):
            if dataclasses.is_dataclass(tp) and tp not in found:
                found += [t for t in _sections(tp) if t not in found]
    return found


def test_every_field_of_every_section_has_help_text():
    sections = _sections(RunConfig)
    assert len(sections) >= 10  # the run, its stages and their method/task settings
    for cls in sections:
        missing = {f.name for f in dataclasses.fields(cls)} - set(field_docs(cls))
        assert not missing, f"{cls.__name__}: fields without a docstring under them: {sorted(missing)}"
    assert field_docs(TrainConfig)["max_steps"] == "Optimizer steps (grpo/rft: sampling rounds)."


def test_shipped_configs_exist():
    assert CONFIGS, "no YAML under configs/"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)


def test_a_relative_data_file_is_read_from_the_config_files_folder_and_stored_absolute(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "run.yaml"
    path.write_text("data: {task: file, file: {path: rows.json, eval_path: ../held/out.json}}\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(path)
    assert cfg.data.file.path == str(folder / "rows.json")
    assert cfg.data.file.eval_path == str(tmp_path / "held" / "out.json")
    # The run's saved config names the same files from any folder.
    again = load_config(_write(tmp_path / "elsewhere", yaml.safe_dump(config_to_dict(cfg))))
    assert again.data.file == cfg.data.file
    # An override is typed in the shell: relative to the current folder; absolute stays.
    assert load_config(path, ["data.file.path=mine.json"]).data.file.path == str(elsewhere / "mine.json")
    assert load_config(path, [f"data.file.path={tmp_path / 'abs.json'}"]).data.file.path == str(tmp_path / "abs.json")


def test_the_shipped_data_configs_find_the_shared_data_from_any_folder(tmp_path, monkeypatch):
    from conftest import SHARED_DATA

    monkeypatch.chdir(tmp_path)
    root = Path(__file__).resolve().parents[2]
    for name, file in (("gsm8k_lora", "gsm8k/test.jsonl"), ("math23k_lora", "math23k/trainset.sample.json"),
                       ("alpaca_zh_lora", "alpaca_zh/sample.json")):
        assert load_config(root / "configs" / f"{name}.yaml").data.file.path == str((SHARED_DATA / file).resolve())
