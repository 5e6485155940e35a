"""Encoder registry: every tiny encoder encodes; metadata is right; bad input is handled (CPU, offline)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import encoders as E
from encoders.cli import main as cli_main

TINY = sorted(E.list_encoders("tiny-*"))
REAL = sorted(set(E.list_encoders()) - set(TINY))
TEXTS = ["Toy Story (1995)", "", "GoldenEye (1995) is a James Bond film with a much longer title than the rest", "   ", None]
TEXT_VALID = [True, False, True, False, False]


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> list:
    """A real JPEG, a PNG of another size, a truncated JPEG, a missing path, garbage bytes, an empty path."""
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(d / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).convert("L").save(d / "b.png")
    (d / "truncated.jpg").write_bytes((d / "a.jpg").read_bytes()[:200])
    return [str(d / "a.jpg"), d / "b.png", str(d / "truncated.jpg"), str(d / "missing.jpg"), b"not an image", ""]


IMAGE_VALID = [True, True, False, False, False, False]


def raws_for(encoder: E.Encoder, image_files: list) -> tuple[list, list[bool]]:
    return (TEXTS, TEXT_VALID) if encoder.info.modality == "text" else (image_files, IMAGE_VALID)


def test_registry_names_and_patterns():
    assert TINY == ["tiny-bert", "tiny-clip", "tiny-clip-text", "tiny-glm", "tiny-glm4", "tiny-llama", "tiny-resnet",
                    "tiny-swin", "tiny-t5"]
    for required in ("llama-7b", "llama-13b", "llama-65b", "t5-small", "t5-base", "t5-large", "chatglm", "minilm-l6", "mpnet-base",
                     "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "swin-t", "swin-b",
                     "clip-vit-b-32", "clip-vit-l-14", "clip-vit-b-32-text", "clip-vit-l-14-text"):
        assert required in REAL
    text, image = E.list_encoders("text/*"), E.list_encoders("image/*")
    assert set(text) | set(image) == set(E.list_encoders()) and not set(text) & set(image)
    assert all(E.get_info(n).modality == "image" for n in image)
    assert E.list_encoders("image/tiny-*") == ["tiny-clip", "tiny-resnet", "tiny-swin"]
    assert E.list_encoders("llama-*") == ["llama-13b", "llama-65b", "llama-7b"]


def test_unknown_name_names_closest_first():
    with pytest.raises(KeyError) as err:
        E.get_info("llama7b")
    msg = str(err.value)
    assert "closest: llama-7b" in msg and "minilm-l6" in msg
    with pytest.raises(KeyError, match="closest: resnet50"):
        E.create_encoder("resnet-50")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        E.get_info("local-dir:/no/such/dir")


@pytest.fixture(scope="module")
def tiny_encoders() -> dict[str, E.Encoder]:
    return {name: E.create_encoder(name) for name in TINY}


@pytest.mark.parametrize("name", TINY)
def test_tiny_encoder_encodes_batch(name, tiny_encoders, image_files):
    enc = tiny_encoders[name]
    raws, valid = raws_for(enc, image_files)
    batch = enc.preprocess(raws)
    assert batch["valid"].tolist() == valid
    feats = enc.encode(batch)
    assert feats.shape == (len(raws), enc.info.dim) and feats.dtype == torch.float32 and feats.device.type == "cpu"
    assert torch.isfinite(feats).all()
    ok = torch.tensor(valid)
    assert (feats[~ok] == 0).all() and (feats[ok].norm(dim=1) > 0).all()
    again = E.create_encoder(name)  # seeded init: a fresh instance gives bitwise the same features
    assert torch.equal(again.encode(again.preprocess(raws)), feats)
    assert len(enc.lengths(raws)) == len(raws)


@pytest.mark.parametrize("name", TINY)
def test_tiny_params_match_instantiated_model(name, tiny_encoders):
    enc = tiny_encoders[name]
    assert enc.info == E.get_info(name)
    assert sum(p.numel() for p in enc.module.parameters()) == enc.info.params > 0


def test_seeded_init_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    E.create_encoder("tiny-llama")
    assert torch.equal(torch.rand(3), expected)


# Published parameter counts of the feature extractors (classifier / LM head removed):
# LLaMA-7B 6.74B minus its 32000x4096 head; ResNet-50 25,557,032 minus the 2048x1000+1000 fc;
# ResNet-18 11,689,512 minus 513,000; Swin-T 28,288,354 minus 768x1000+1000; CLIP ViT-L/14 image tower 304M;
# all-mpnet-base-v2: its model.safetensors holds 109,486,978 values, 514 of them the position_ids buffer.
KNOWN_PARAMS = {
    "llama-7b": 6_738_415_616 - 32000 * 4096,
    "resnet50": 25_557_032 - 2_049_000,
    "resnet18": 11_689_512 - 513_000,
    "swin-t": 28_288_354 - 769_000,
    "clip-vit-l-14": 303_966_208,
    "minilm-l6": 22_713_216,
    "mpnet-base": 109_486_978 - 514,
}


@pytest.mark.parametrize("name", sorted(KNOWN_PARAMS))
def test_real_params_match_published_counts(name):
    assert E.get_info(name).params == KNOWN_PARAMS[name]


def _meta_output(spec, module) -> torch.Tensor:
    """One forward on the meta device (no memory): the feature width the real model produces."""
    if spec.modality == "image":
        return module(torch.empty(1, 3, spec.image_size, spec.image_size, device="meta"))
    ids = torch.zeros(1, 8, dtype=torch.long, device="meta")
    if spec.backend == "open_clip":
        return module.encode_text(torch.zeros(1, spec.max_tokens, dtype=torch.long, device="meta"))
    return module(input_ids=ids).last_hidden_state[:, -1]


@pytest.mark.parametrize("name", REAL)
def test_real_metadata_from_meta_device(name):
    info, spec = E.get_info(name), E.get_spec(name)
    with torch.device("meta"):
        module = spec.skeleton()
    assert all(p.device.type == "meta" for p in module.parameters())
    assert sum(p.numel() for p in module.parameters()) + getattr(spec, "extra_params", 0) == info.params
    assert _meta_output(spec, module).shape[-1] == info.dim
    assert info.weights and info.dtype in ("bfloat16", "float32") and info.pooling in ("mean", "cls", "last", "avg", "proj")
    assert (info.max_tokens is None) == (info.modality == "image") == (info.image_size is not None)


def test_strategy_from_memory_budget(monkeypatch):
    assert E.get_info("llama-65b").strategy == "zero3"  # 65B x 2 bytes does not fit 80 GB
    assert E.get_info("llama-13b").strategy == "ddp"
    monkeypatch.setenv("HARNESS_DEVICE_MEMORY_GB", "16")
    assert E.get_info("llama-7b").strategy == "zero3"  # 13.2 GB of bf16 weights + activations > 16 GB
    assert E.get_info("t5-large").strategy == "ddp"


def test_preprocess_is_picklable_and_runs_in_dataloader_workers(tiny_encoders, image_files):
    for name in ("tiny-llama", "tiny-resnet", "tiny-clip-text"):
        enc = tiny_encoders[name]
        raws, _ = raws_for(enc, image_files)
        pre = pickle.loads(pickle.dumps(enc.preprocessor))
        loader = torch.utils.data.DataLoader(raws, batch_size=3, num_workers=1, collate_fn=pre)
        feats = torch.cat([enc.encode(b) for b in loader])
        assert torch.allclose(feats, enc.encode(enc.preprocess(raws)), atol=1e-6)


def test_lengths_count_tokens_with_truncation(tiny_encoders):
    enc = tiny_encoders["tiny-llama"]
    texts = ["hello world", "toy story", " ".join(["word"] * 500)]
    lengths = enc.lengths(texts)
    assert lengths == enc.preprocess(texts)["attention_mask"].sum(1).tolist()
    assert lengths[0] == 4 and lengths[2] == enc.info.max_tokens  # [CLS] hello world [SEP]; truncated
    assert tiny_encoders["tiny-resnet"].lengths(["a", "b"]) == [1, 1]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-glm", "tiny-glm4"])
def test_packed_path_matches_padded_reference(name):
    texts = ["Toy Story (1995)", "", "a much longer movie title with many more words than the others", "Heat (1995)"]
    padded = E.create_encoder(name, packing=False)
    packed = E.create_encoder(name, packing=True)
    batch = packed.preprocess(texts)
    assert set(batch) == {"input_ids", "cu_seqlens", "valid"} and batch["input_ids"].dim() == 1
    assert batch["input_ids"].numel() == sum(packed.lengths(texts))  # no padding at all
    ref, out = padded.encode(padded.preprocess(texts)), packed.encode(batch)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4), (out - ref).abs().max()


def test_packing_refused_for_bidirectional_models():
    with pytest.raises(ValueError, match="decoder-only"):
        E.create_encoder("tiny-bert", packing=True)


def test_corrupt_and_missing_images_are_invalid_not_errors(tiny_encoders, image_files):
    enc = tiny_encoders["tiny-resnet"]
    batch = enc.preprocess(image_files + [Image.new("RGB", (10, 20), "red"), 42])
    assert batch["valid"].tolist() == IMAGE_VALID + [True, False]
    assert (batch["pixel_values"][~batch["valid"]] == 0).all()
    assert batch["pixel_values"].shape[1:] == (3, 32, 32)


def test_saved_checkpoint_loads_by_local_path(tmp_path, tiny_encoders):
    enc = tiny_encoders["tiny-t5"]
    enc.module.save_pretrained(tmp_path / "t5")
    enc.preprocessor.tokenizer.save_pretrained(tmp_path / "t5")
    info = E.get_info(f"local-dir:{tmp_path / 't5'}")
    assert (info.family, info.pooling, info.params, info.dim) == ("t5", "mean", enc.info.params, 32)
    local = E.create_encoder(str(tmp_path / "t5"))
    assert torch.allclose(local.encode(local.preprocess(TEXTS)), enc.encode(enc.preprocess(TEXTS)), atol=1e-6)


def test_remote_code_checkpoint_needs_explicit_trust(tmp_path, empty_weight_stores):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "chatglm", "auto_map": {"AutoModel": "modeling_chatglm.ChatGLMModel"}}))
    with pytest.raises(PermissionError, match="trust_remote_code=True"):
        E.get_info(str(tmp_path))
    with pytest.raises(PermissionError, match="trust_remote_code=True"):
        E.create_encoder("chatglm3-6b")
    with pytest.raises(E.WeightsNotFoundError, match="THUDM/chatglm3-6b"):
        E.create_encoder("chatglm3-6b", trust_remote_code=True)


@pytest.fixture
def empty_weight_stores(tmp_path, monkeypatch):
    """No HF cache and an empty $HARNESS_WEIGHTS_DIR: what a fresh machine has."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HARNESS_WEIGHTS_DIR", str(tmp_path / "weights"))
    return tmp_path / "weights"


@pytest.mark.parametrize("name,repo", [("t5-small", "google-t5/t5-small"), ("llama-7b", "huggyllama/llama-7b"),
                                       ("resnet50", "timm/resnet50.tv_in1k"),
                                       ("clip-vit-b-32", "timm/vit_base_patch32_clip_224.openai")])
def test_real_name_without_local_weights_says_where_to_put_them(name, repo, empty_weight_stores):
    with pytest.raises(E.WeightsNotFoundError) as err:
        E.create_encoder(name)
    msg = str(err.value)
    assert repo in msg and str(empty_weight_stores / name) in msg and "allow_downloads=True" in msg


def test_real_name_loads_from_weights_dir(empty_weight_stores):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = timm.create_model("resnet18", num_classes=0).eval()
    (empty_weight_stores / "resnet18").mkdir(parents=True)
    save_file(reference.state_dict(), empty_weight_stores / "resnet18" / "model.safetensors")
    enc = E.create_encoder("resnet18")
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(pixels)
    assert torch.allclose(enc.encode({"pixel_values": pixels, "valid": torch.ones(2, dtype=torch.bool)}), expected, atol=1e-5)


def test_cli_lists_encoders(capsys):
    assert cli_main(["list", "--json", "--modality", "image"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(E.list_encoders("image/*"))
    assert {"name", "modality", "backend", "params", "dim", "pooling", "layer", "strategy"} <= set(rows[0])
    assert cli_main(["list", "llama-*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "modality", "backend", "params", "dim", "pooling", "strategy"]
    assert lines[2].split() == ["llama-65b", "text", "transformers", "65.02B", "8192", "last@-1", "zero3"]


def test_random_weights_build_real_architecture_offline():
    enc = E.create_encoder("t5-small", random_weights=True)
    info = E.get_info("t5-small")
    assert enc.info.weights == "random" and enc.info.params == info.params == 35_330_816
    feats = enc.encode(enc.preprocess(["Toy Story (1995)", ""]))
    assert feats.shape == (2, 512) and torch.isfinite(feats).all() and (feats[1] == 0).all()


def test_compile_blocks_compiles_each_repeated_layer():
    from encoders.base import compile_blocks

    enc = E.create_encoder("tiny-llama")
    compile_blocks(enc.module)
    assert all(layer._compiled_call_impl is not None for layer in enc.module.layers)
    assert enc.module._compiled_call_impl is None  # the model's own input handling stays eager
