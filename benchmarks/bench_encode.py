"""Encode throughput: our encode job vs a reference, side by side in one run (JSON lines).

    python benchmarks/bench_encode.py                  # CPU: MiniLM on the ML-1M item texts vs sentence-transformers
    python benchmarks/bench_encode.py --gpu --out gpu.jsonl   # one GPU: random-weight real architectures vs plain loops

Each line: {"what", "ours", "reference", "ratio", "unit", "machine", ...}. Not a test: tests check
correctness, this checks speed (see ../shared/docs/PERFORMANCE.md for the anchors and targets).

GPU references (PERFORMANCE.md): text = the plain length-sorted loop (token budget 16k, padded, SDPA,
tokenisation inline); images = the model on tensors already on the GPU (batch 256, channels_last).
Ours = the whole encode job (``harness.encode``): texts tokenised / JPEG files decoded in DataLoader
workers, token-budget batches, padding-free packing where the encoder has it, shards + merge.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # --gpu on a CPU box is a smoke test of the script

from harness.encoding import encode_dataset
from harness.features import load_features


def machine() -> str:
    cpu = f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}; {cpu}; torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()}; {cpu}; torch {torch.__version__}"


def emit(line: dict, out: Path | None) -> None:
    text = json.dumps(line)
    print(text, flush=True)
    if out is not None:
        with open(out, "a") as fh:
            fh.write(text + "\n")


def _dataset(name: str, texts: list[str] | None = None, images: list[str] | None = None):
    from harness.data import ItemTable, SequenceDataset

    n = len(texts if texts is not None else images)
    items = ItemTable([str(i) for i in range(n)], texts or [""] * n, images or [""] * n)
    return SequenceDataset(name, ["u"], [np.arange(n, dtype=np.int64)], items)


# ----------------------------------------------------------------------------- CPU: vs sentence-transformers


def _ours_cpu(dataset, root: Path, batch_tokens: int | None) -> tuple[float, dict]:
    start = time.perf_counter()
    encode_dataset(dataset, "minilm-l6", cache_root=root, cpu=True, progress=False, overwrite=True,
                   batch_tokens=batch_tokens)
    wall = time.perf_counter() - start
    return wall, load_features(dataset, "minilm-l6", "text", cache_root=root).manifest


def _reference_cpu(texts: list[str]) -> tuple[float, np.ndarray]:
    from sentence_transformers import SentenceTransformer

    from encoders.tokenizers import minilm_dir

    start = time.perf_counter()
    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    emb = model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
    return time.perf_counter() - start, emb


def bench_cpu(repeats: int, batch_tokens: int | None, out: Path | None) -> None:
    """Whole job (load + encode + cache) vs sentence-transformers (load + encode), alternating, best of N."""
    from harness.data import load_dataset

    dataset = load_dataset("ml-1m")
    texts = dataset.items.texts
    ours, ref, manifest, emb = [], [], {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            wall, emb = _reference_cpu(texts)
            ref.append(wall)
            wall, manifest = _ours_cpu(dataset, Path(tmp), batch_tokens)
            ours.append(wall)
            mine = np.asarray(load_features(dataset, "minilm-l6", "text", cache_root=tmp).matrix)
    cos = float(((mine * emb).sum(1) / np.linalg.norm(mine, axis=1) / np.linalg.norm(emb, axis=1)).min())
    n = len(texts)
    emit({"what": "minilm-l6 encode of ML-1M item texts (3,416), CPU, whole job incl. model load",
          "ours": round(n / min(ours), 1), "reference": round(n / min(ref), 1), "ratio": round(min(ref) / min(ours), 3),
          "unit": "items/s", "reference_is": "sentence-transformers SentenceTransformer.encode(batch_size=32)",
          "ours_is": f"harness.encode (token budget {manifest['batch_budget']}, chunk {manifest['chunk_size']})",
          "ours_s": [round(x, 2) for x in ours], "reference_s": [round(x, 2) for x in ref],
          "min_cosine_vs_reference": round(cos, 6), "tokens_per_s_ours": round(manifest["throughput"]["tokens_per_s"], 1),
          "padding_overhead": round(manifest["throughput"]["padded_tokens"] / manifest["throughput"]["tokens"], 3),
          "machine": machine()}, out)


# ----------------------------------------------------------------------------- GPU: vs plain loops


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """Texts whose token counts are lognormal around 48 (clipped 4..512), as in PERFORMANCE.md."""
    from encoders.tokenizers import tiny_tokenizer

    vocab = [w for w, i in tiny_tokenizer().get_vocab().items() if 2000 <= i < 29000 and w.isalpha()]
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(48), 0.6, size=n), 4, 512).astype(int)
    return [" ".join(rng.choice(vocab, size=k)) for k in lengths]


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "last":
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), mask.sum(1) - 1]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1)


@torch.inference_mode()
def plain_text_loop(name: str, texts: list[str], budget: int = 16384) -> dict:
    """The reference: length-sorted, padded token-budget batches, SDPA, tokenisation inline."""
    from encoders import create_encoder

    enc = create_encoder(name, device=DEVICE, random_weights=True, packing=False)
    tok, model, pooling = enc.preprocessor.tokenizer, enc.module, enc.info.pooling
    max_len = enc.info.max_tokens or 512
    lengths = [len(x) for x in tok(texts, truncation=True, max_length=max_len)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    batches, cur = [], []
    for i in order:
        if cur and (len(cur) + 1) * lengths[cur[0]] > budget:
            batches.append(cur)
            cur = []
        cur.append(i)
    batches.append(cur)
    kwargs = {"use_cache": False} if enc.info.family in ("llama", "glm", "glm4") else {}
    _sync()
    start = time.perf_counter()
    for b in batches:
        t = tok([texts[i] for i in b], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        ids, mask = t["input_ids"].to(DEVICE, non_blocking=True), t["attention_mask"].to(DEVICE, non_blocking=True)
        _pool(model(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state, mask, pooling).float().cpu()
    _sync()
    wall = time.perf_counter() - start
    del enc, model
    return {"items_per_s": len(texts) / wall, "tokens_per_s": sum(lengths) / wall, "seconds": wall}


@torch.inference_mode()
def plain_image_loop(name: str, n: int, batch: int = 256) -> dict:
    """The reference: the model on tensors already on the GPU (bf16, channels_last)."""
    from encoders import create_encoder

    enc = create_encoder(name, device=DEVICE, random_weights=True)
    size = enc.info.image_size
    x = torch.randn(batch, 3, size, size, device=DEVICE, dtype=enc.dtype).contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        enc.module(x)
    _sync()
    start = time.perf_counter()
    steps = max(1, n // batch)
    for _ in range(steps):
        enc.module(x).float().cpu()
    _sync()
    wall = time.perf_counter() - start
    del enc
    return {"items_per_s": steps * batch / wall, "seconds": wall}


def ours_gpu(name: str, dataset, root: Path, **options) -> dict:
    """Our job, warmed up on a small slice first (CUDA context, kernels), then timed from its manifest."""
    encode_dataset(dataset, name, cache_root=root, random_weights=True, progress=False, limit=512, **options)
    encode_dataset(dataset, name, cache_root=root, random_weights=True, progress=False, overwrite=True, **options)
    manifest = json.loads(next(root.glob(f"features/{dataset.name}/*/*/manifest.json")).read_text())
    return {**manifest["throughput"], "peak_gpu_gb": round(manifest["peak_memory"]["gpu_bytes_max_rank"] / 2**30, 2)}


def make_jpegs(folder: Path, n_files: int, n_items: int) -> list[str]:
    """``n_files`` distinct 256x256 JPEG files (smooth gradients + noise), referenced cyclically by ``n_items``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256]
    paths = []
    for k in range(n_files):
        base = np.stack([(xx + 7 * k) % 256, (yy + 3 * k) % 256, (xx + yy + k) % 256], -1)
        img = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"{k:05d}.jpg"
        Image.fromarray(img).save(path, quality=90)
        paths.append(str(path))
    return [paths[i % n_files] for i in range(n_items)]


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _text_line(name: str, texts: list[str], root: Path, out: Path | None, **options) -> None:
    ds = _dataset(f"synthetic-{len(texts)}", texts=texts)
    ours = ours_gpu(name, ds, root, **options)
    _free()
    ref = plain_text_loop(name, texts)
    _free()
    emit({"what": f"{name} (random weights) text encode, {len(texts)} texts, lognormal ~48 tokens, bf16",
          "ours": round(ours["tokens_per_s"]), "reference": round(ref["tokens_per_s"]),
          "ratio": round(ours["tokens_per_s"] / ref["tokens_per_s"], 3), "unit": "tokens/s",
          "ours_items_per_s": round(ours["items_per_s"], 1), "reference_items_per_s": round(ref["items_per_s"], 1),
          "ours_is": f"harness.encode {options or ''}", "reference_is": "length-sorted padded loop, 16k token budget, SDPA",
          "peak_gpu_gb": ours["peak_gpu_gb"], "machine": machine()}, out)


def _image_line(name: str, images: list[str], root: Path, out: Path | None, workers: int) -> None:
    ds = _dataset(f"jpegs-{len(images)}", images=images)
    ours = ours_gpu(name, ds, root, num_workers=workers, batch_size=256)
    _free()
    ref = plain_image_loop(name, len(images))
    _free()
    emit({"what": f"{name} (random weights) image encode, {len(images)} JPEG files 256px, bf16",
          "ours": round(ours["items_per_s"]), "reference": round(ref["items_per_s"]),
          "ratio": round(ours["items_per_s"] / ref["items_per_s"], 3), "unit": "images/s",
          "ours_is": f"harness.encode from JPEG files (decode + resize in {workers} workers)",
          "reference_is": "model on tensors already on the GPU, batch 256, channels_last",
          "peak_gpu_gb": ours["peak_gpu_gb"], "machine": machine()}, out)


def bench_gpu(models: list[str], n_texts: int, n_images: int, out: Path | None) -> None:
    from encoders import get_info

    torch.backends.cuda.matmul.allow_tf32 = True
    texts = synthetic_texts(n_texts)
    workers = max(1, (os.cpu_count() or 2) - 1)
    with tempfile.TemporaryDirectory() as tmp:
        image_models = [m for m in models if get_info(m).modality == "image"]
        images = make_jpegs(Path(tmp) / "jpegs", 512, n_images) if image_models else []
        for name in models:
            root = Path(tmp) / name
            if name in image_models:
                _image_line(name, images, root, out, workers)
            else:
                _text_line(name, texts if name != "tiny-llama" else texts[:2048], root, out, num_workers=min(8, workers))


GPU_MODELS = ["tiny-llama", "llama-7b", "t5-large", "resnet50", "clip-vit-l-14"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu", action="store_true", help="GPU mode: random-weight real architectures vs plain loops")
    p.add_argument("--models", nargs="+", default=GPU_MODELS, help=f"GPU mode models (default {' '.join(GPU_MODELS)})")
    p.add_argument("--texts", type=int, default=8192, help="GPU mode: synthetic texts per text model")
    p.add_argument("--images", type=int, default=8192, help="GPU mode: images per image model")
    p.add_argument("--repeats", type=int, default=2, help="CPU mode: alternating repeats (best of)")
    p.add_argument("--batch-tokens", type=int, help="CPU mode: our token budget (default: the job's)")
    p.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.gpu:
        bench_gpu(a.models, a.texts, a.images, a.out)
    else:
        bench_cpu(a.repeats, a.batch_tokens, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
