"""HuggingFace configs that are not decoder LLMs (BERT, RoBERTa, T5, ViT, Whisper, CLIP; ResNet,
ConvNeXt, EfficientNet): the
model transformers builds from the config, on the meta device (no weights), through
`torch.export` and the importer.

`ModelConfig` describes decoder-only transformers (`hf.py` maps those configs to it). Encoders,
encoder-decoders and vision/audio models are costed as their real module instead: the config's
`model_type` picks transformers' config class (`AutoConfig.for_model`, plain JSON values, no
remote code), an allow-listed model class is built on the meta device, and the graph is the
importer's (`from_torch`). Workload keys: `batch` (default 1), `seq` (tokens of a text input,
default 128; T5 and Whisper decoders take `seq` tokens too), `image` (a convolutional
network's square image side: the config's `image_size`, else 224), `dtype` (default bf16). They
are
workloads for evaluate/compare/simulate; `train`/`serve` take decoder LLMs only.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from chipforge.errors import WorkloadError
from chipforge.workload.graph import Graph
from chipforge.workload.imported import logger_quiet, require
from chipforge.workload.torch_import import from_torch

# model_type -> the transformers class built for it (its bare or task model)
MODEL_CLASSES = {
    "bert": "BertModel",
    "roberta": "RobertaModel",
    "t5": "T5ForConditionalGeneration",
    "vit": "ViTModel",
    "whisper": "WhisperForConditionalGeneration",
    "clip": "CLIPModel",
    "resnet": "ResNetForImageClassification",
    "convnext": "ConvNextForImageClassification",
    "efficientnet": "EfficientNetForImageClassification",
}
CNNS = ("resnet", "convnext", "efficientnet")  # any image side (`image`)
KEYS = {"batch", "seq", "image", "dtype"}
# Size keys of these configs (top level or in a text_/vision_/audio_config), checked before
# transformers builds anything: a whole number from 1 up to the cap. Layer counts are capped
# for the trace's sake (torch.export walks every layer: ~1 s per 10 layers; real models have
# <= 48), sides of an image at 16,384 pixels, other sizes at 2**24.
LAYER_KEYS = {"num_hidden_layers", "num_layers", "num_decoder_layers", "encoder_layers",
              "decoder_layers"}  # fmt: skip
SIZE_KEYS = LAYER_KEYS | {
    "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size",
    "max_position_embeddings", "type_vocab_size", "image_size", "patch_size", "num_channels",
    "d_model", "d_ff", "d_kv", "num_heads", "encoder_attention_heads", "decoder_attention_heads",
    "encoder_ffn_dim", "decoder_ffn_dim", "max_source_positions", "max_target_positions",
    "num_mel_bins", "projection_dim", "relative_attention_num_buckets",
    "relative_attention_max_distance", "embedding_size", "hidden_dim",
}  # fmt: skip
# per-stage lists of the convolutional configs: each entry a whole number (layers: <= MAX_LAYERS)
LIST_KEYS = {"depths", "hidden_sizes", "num_block_repeats", "in_channels", "out_channels",
             "kernel_sizes", "strides"}  # fmt: skip
SCALE_KEYS = ("width_coefficient", "depth_coefficient")  # EfficientNet's multipliers: (0, 8]
ENCODER_LAYERS = ("num_hidden_layers", "num_layers", "encoder_layers")
DECODER_LAYERS = ("num_decoder_layers", "decoder_layers")
MAX_LAYERS = 256  # per key, and in all (encoder + decoder, every sub-model)
# Keys that make transformers pick attention/expert code at build time: a Hub kernel name
# ("kernels-community/flash-attn") is downloaded and imported. Only the built-in ones are taken.
CODE_KEYS = {"attn_implementation", "_attn_implementation", "experts_implementation",
             "_experts_implementation"}  # fmt: skip
# Loader metadata of a config.json, never used here (no weights or code are loaded): dropped.
DROPPED = {"model_type", "architectures", "auto_map", "trust_remote_code", "quantization_config",
           "_name_or_path", "transformers_version"}  # fmt: skip
MAX_SIDE = 16384
MAX_SIZE = 2**24
# The run's sizes, checked before torch is imported (`batch`, `seq`) and, with the config's
# defaults known, before the model is built (the largest tensor: torch's sizes are int64 and a
# meta tensor past them fails deep in torch.export).
MAX_BATCH = 2**20
MAX_ELEMENTS = 2**40  # no real activation is larger (4 TiB in fp32): a size past it is hostile
TEXT_KINDS = ("bert", "roberta", "t5", "clip")  # a text input of `seq` tokens


def check_sizes(data: dict, name: str, where: str = "") -> None:
    """Every size key of a config (and of every table nested in it: `text_config`, CLIP's
    `text_config_dict`, ...) is a whole number in range: a negative, string, huge or
    1e5-layer config is one line, not a torch error or an hour-long trace."""
    for key, value in data.items():
        if isinstance(value, dict):
            check_sizes(value, name, f"{where}{key}.")
        if key in CODE_KEYS and value not in (None, "eager", "sdpa"):
            raise WorkloadError(
                f"`workload` {name}: `{where}{key}` = {repr(value)[:60]} would make transformers "
                'load attention or expert code (from the Hub); give "eager" or "sdpa", or remove it'
            )
        if key in LIST_KEYS:
            cap = MAX_LAYERS if key in ("depths", "num_block_repeats") else MAX_SIZE
            if not isinstance(value, list) or not 1 <= len(value) <= 64:
                raise WorkloadError(
                    f"`workload` {name}: `{where}{key}` must be a list of 1 to 64 whole numbers, "
                    f"not {repr(value)[:40]}"
                )
            for i, item in enumerate(value):
                _whole(item, cap, name, f"{where}{key}[{i}]")
        if key in SCALE_KEYS and not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 8
        ):
            raise WorkloadError(
                f"`workload` {name}: `{where}{key}` must be a number above 0 and at most 8, "
                f"not {repr(value)[:40]}"
            )
        if key not in SIZE_KEYS:
            continue
        cap = MAX_LAYERS if key in LAYER_KEYS else MAX_SIDE if key == "image_size" else MAX_SIZE
        _whole(value, cap, name, f"{where}{key}")


def _whole(value, cap: int, name: str, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cap:
        raise WorkloadError(
            f"`workload` {name}: `{key}` must be a whole number from 1 to {cap:,}, "
            f"not {repr(value)[:40]}"
        )


def layers(config) -> int:
    """Layers transformers will build from `config` (its defaults and sub-configs included):
    encoder (or only) stack plus decoder stack of each config, aliases counted once."""

    def count(d: dict) -> int:
        subs = sum(count(v) for v in d.values() if isinstance(v, dict))
        enc = max((d.get(k) or 0 for k in ENCODER_LAYERS if isinstance(d.get(k), int)), default=0)
        dec = max((d.get(k) or 0 for k in DECODER_LAYERS if isinstance(d.get(k), int)), default=0)
        stages = sum(d.get("depths") or [])  # ResNet, ConvNeXt: blocks per stage
        scale = d.get("depth_coefficient") or 1  # EfficientNet: ceil(scale x repeats) a stage
        blocks = sum(math.ceil(scale * r) for r in d.get("num_block_repeats") or [])
        return subs + enc + dec + stages + blocks

    return count(config.to_dict())


def traced_type(data: dict) -> str | None:
    """The model_type of a config this module builds, else None."""
    kind = data.get("model_type")
    return kind if isinstance(kind, str) and kind in MODEL_CLASSES else None


def _largest(config, batch: int, seq: int, image: int | None) -> tuple[int, str, str]:
    """Elements of the run's largest activation (an upper estimate), what it is and how to
    shrink it: the text stack's widest projection and attention scores, the image and the
    vision stack's."""
    kind = config.model_type

    def size(part, *keys, default=1) -> int:
        return max((getattr(part, k, None) or 0 for k in keys), default=0) or default

    run = "lower `workload.batch` or `workload.seq`"
    found = [(0, "", "")]
    text = getattr(config, "text_config", config)
    width = size(text, "hidden_size", "d_model", "intermediate_size", "d_ff", "vocab_size",
                 "encoder_ffn_dim", "decoder_ffn_dim")  # fmt: skip
    heads = size(text, "num_attention_heads", "num_heads", "encoder_attention_heads",
                 "decoder_attention_heads")  # fmt: skip
    tokens = [seq] if kind in TEXT_KINDS else []
    if kind == "whisper":
        frames = 2 * size(config, "max_source_positions")
        fix = "lower `workload.batch` or the config's max_source_positions"
        found.append((batch * size(config, "num_mel_bins") * frames, "audio features", fix))
        tokens += [frames // 2, seq]
    for n in tokens:
        found += [(batch * n * width, f"hidden states ({n:,} tokens)", run),
                  (batch * heads * n * n, f"attention scores ({n:,} tokens)", run)]  # fmt: skip
    if kind in ("vit", "clip", *CNNS):
        vision = getattr(config, "vision_config", config)
        side = image or size(vision, "image_size", default=224)
        fix = "lower `workload.batch` or the image size"
        image_size = batch * size(vision, "num_channels", default=3) * side * side
        found.append((image_size, f"image ({side:,} pixels a side)", fix))
        if kind in CNNS:  # a stem at 1/2 of the side, then stages at 1/4, 1/8, ... (upper bound)
            stem = size(vision, "embedding_size", default=64)
            maps = [stem * (side // 2) ** 2]
            for key in ("hidden_sizes", "out_channels"):
                widths = getattr(vision, key, None) or []
                maps += [w * (side >> (i + 2)) ** 2 for i, w in enumerate(widths)]
            found.append((batch * max(maps), "feature maps", fix))
        if kind not in CNNS:
            n = (side // size(vision, "patch_size")) ** 2 + 1
            fix = "lower `workload.batch`, the config's image_size or raise its patch_size"
            wide = size(vision, "hidden_size", "intermediate_size")
            scores = batch * size(vision, "num_attention_heads") * n * n
            found += [(batch * n * wide, f"hidden states ({n:,} patches)", fix),
                      (scores, f"attention scores ({n:,} patches)", fix)]  # fmt: skip
    return max(found)


def check_run(batch: int, seq: int | None, image: int | None) -> None:
    """The run's sizes (`workload.batch`, `seq`, `image`; None: not given) against their caps,
    before torch is imported (a traced config's and a zoo model's alike)."""
    for key, value, cap in (("batch", batch, MAX_BATCH), ("seq", seq, MAX_SIZE),
                            ("image", image, MAX_SIDE)):  # fmt: skip
        if value is not None and not 1 <= value <= cap:
            raise WorkloadError(f"`workload.{key}` must be from 1 to {cap:,}, not {value:,}")


def check_elements(name: str, batch: int, largest: tuple[int, str, str]) -> None:
    """The run's largest tensor (elements, what it is, how to shrink it) against MAX_ELEMENTS:
    a meta tensor past int64 fails deep in torch.export (exit 3)."""
    elements, what, fix = largest
    if elements > MAX_ELEMENTS:
        raise WorkloadError(
            f"`workload` {name}: batch {batch:,} makes {what} of {elements:.3g} elements, past "
            f"2**40 ({MAX_ELEMENTS:.3g}); {fix}"
        )


def _check_elements(config, name: str, batch: int, seq: int, image: int | None) -> None:
    """The run's sizes against the built config (its defaults known), before the model is."""
    if config.model_type in TEXT_KINDS:
        text = getattr(config, "text_config", config)
        limit = getattr(text, "max_position_embeddings", None) or seq
        if seq > limit:
            raise WorkloadError(f"`workload.seq` must be at most {limit} for this config")
    check_elements(name, batch, _largest(config, batch, seq, image))


def _inputs(torch, config, batch: int, seq: int, image: int | None) -> dict:
    """The model's inputs on the meta device, by its main input (text, image, audio)."""
    meta = {"device": "meta"}
    vision = getattr(config, "vision_config", config)
    kind = config.model_type
    out = {}
    if kind in TEXT_KINDS:  # seq checked against the position table (`_check_elements`)
        out["input_ids"] = torch.zeros(batch, seq, dtype=torch.long, **meta)
    if image is not None and kind not in CNNS:
        raise WorkloadError(
            f"`workload.image` is for a convolutional network's config; a {kind} config takes "
            "its image_size (its position table is that size)"
        )
    if kind in ("vit", "clip", *CNNS):
        side = image or getattr(vision, "image_size", None) or 224
        out["pixel_values"] = torch.zeros(batch, vision.num_channels, side, side, **meta)
    if kind == "whisper":
        frames = 2 * config.max_source_positions
        out["input_features"] = torch.zeros(batch, config.num_mel_bins, frames, **meta)
    if kind in ("t5", "whisper"):
        out["decoder_input_ids"] = torch.zeros(batch, seq, dtype=torch.long, **meta)
    return out


def _quiet():
    """transformers' warnings about a config's values (a token id past the vocabulary, ...)
    are held back: they do not change the cost, and a value it cannot build is one line."""
    return logger_quiet("transformers", logging.ERROR)


# image-text configs whose vision tower and projector `image_tower` costs: the model class
# with `get_image_features`
IMAGE_TEXT = {"gemma3": "Gemma3Model"}


def image_tower(path: Path, data: dict, images: int, dtype: str) -> Graph:
    """The vision tower and the projector of an image-text config (Gemma 3: SigLIP, then the
    average pool, norm and projection to the decoder's width) on `images` images at the
    config's `image_size`: transformers' model on the meta device, its `get_image_features`
    through torch.export and the importer."""
    check_sizes(data, path.name)
    torch, transformers, config = _config(path, data, f"a {data['model_type']} config's images")
    vision = config.vision_config
    side, tokens = vision.image_size // vision.patch_size, config.mm_tokens_per_image
    pooled = math.isqrt(tokens)
    if pooled * pooled != tokens or not 0 < pooled <= side or side % pooled:
        raise WorkloadError(
            f"`workload` {path.name}: `mm_tokens_per_image` ({tokens}) must be a square whose "
            f"side divides the vision tower's {side} patches a side (image_size "
            f"{vision.image_size} / patch_size {vision.patch_size}): the projector pools them"
        )
    model = _model(path, torch, transformers, config, IMAGE_TEXT[config.model_type])
    model.language_model = torch.nn.Module()  # the decoder is costed apart: not its weights
    side = vision.image_size
    pixels = torch.zeros(images, vision.num_channels, side, side, device="meta")

    class Images(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model.get_image_features(pixel_values).pooler_output

    return from_torch(Images(), (pixels,), dtype=dtype, name=f"{path.name} images")


def _cannot(path: Path, kind: str, e: Exception) -> WorkloadError:
    """One line: a validator's message is on its last lines (the first names the validator)."""
    why = " ".join(line.strip() for line in str(e).splitlines()[-2:])
    return WorkloadError(
        f"`workload` {path.name}: transformers cannot build a {kind} model from it "
        f"({type(e).__name__}: {why[:160]})"
    )


def _config(path: Path, data: dict, what: str):
    """torch, transformers and the config transformers makes of `data` (its `model_type`'s
    config class), its layers counted; transformers' warnings held back (`_quiet`)."""
    kind = data["model_type"]
    torch = require("torch", what)
    transformers = require("transformers", what)
    fields = {k: v for k, v in data.items() if k not in DROPPED}
    try:
        with _quiet():
            config = transformers.AutoConfig.for_model(kind, **fields)
    except ImportError:
        raise
    except Exception as e:  # transformers' own checks of the values (dataclass validators, ...)
        raise _cannot(path, kind, e) from None
    total = layers(config)
    if total > MAX_LAYERS:
        raise WorkloadError(
            f"`workload` {path.name}: the model has {total:,} layers in all (encoder, decoder "
            f"and sub-models, defaults included); at most {MAX_LAYERS}"
        )
    return torch, transformers, config


def _model(path: Path, torch, transformers, config, class_name: str):
    """transformers' `class_name` built from `config` on the meta device (no weights)."""
    try:
        with torch.device("meta"), _quiet():
            return getattr(transformers, class_name)(config).eval()
    except ImportError:
        raise
    except Exception as e:
        raise _cannot(path, config.model_type, e) from None


def build_traced(path: Path, data: dict, args: dict[str, str], integer, dtype_of) -> Graph:
    """The graph of the config's model (`args`: batch, seq, dtype)."""
    unknown = sorted(set(args) - KEYS)
    if unknown:
        raise WorkloadError(
            f"`workload.{unknown[0]}` is not a key of a {data['model_type']} config workload; "
            f"use {', '.join(sorted(KEYS))}"
        )
    batch = integer("batch", args.get("batch", "1"))
    seq = integer("seq", args.get("seq", "128"))
    image = integer("image", args["image"]) if "image" in args else None
    check_run(batch, seq, image)
    dtype = dtype_of("dtype", args.get("dtype", "bf16"))
    check_sizes(data, path.name)  # before torch and transformers are even imported
    kind = data["model_type"]
    text = data.get("text_config") if isinstance(data.get("text_config"), dict) else data
    limit = text.get("max_position_embeddings") if kind in TEXT_KINDS else None
    if isinstance(limit, int) and seq > limit:  # the config's own table (else its default, below)
        raise WorkloadError(f"`workload.seq` must be at most {limit} for this config")
    torch, transformers, config = _config(path, data, f"a {kind} config")
    _check_elements(config, path.name, batch, seq, image)
    config.use_cache = False  # torch.export cannot return transformers' cache objects
    for part in (config, *(getattr(config, k, None) for k in getattr(config, "sub_configs", {}))):
        if getattr(part, "_attn_implementation", None) not in (None, "eager", "sdpa"):
            raise WorkloadError(f"`workload` {path.name}: only eager or sdpa attention is built")
    model = _model(path, torch, transformers, config, MODEL_CLASSES[kind])
    inputs = _inputs(torch, config, batch, seq, image)

    class Call(torch.nn.Module):  # keyword inputs in, the first output tensor out
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *values):
            out = self.model(**dict(zip(inputs, values, strict=True)), return_dict=True)
            first = next(v for v in out.values() if isinstance(v, torch.Tensor))
            return first

    graph = from_torch(Call(), tuple(inputs.values()), dtype=dtype, name=path.name)
    meta = dict(graph.meta) | {"model": data["model_type"], "batch": batch, "seq": seq}
    if "pixel_values" in inputs:
        meta["image"] = inputs["pixel_values"].shape[-1]
    return Graph(graph.name, graph.ops, graph.resident, graph.tokens, meta)
