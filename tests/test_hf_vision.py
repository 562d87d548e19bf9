"""Vision encoders from Hugging Face folders (``vit``, ``clip_vision_model``, ``clip``,
``siglip_vision_model``, ``siglip``): tiny random-weight models built with transformers and saved
with ``save_pretrained``, against transformers (interpreter and compiled, fp32), the int8 vision
tower against fp32 (cosine similarity), wrong image sizes and channel counts, and the CLI."""
import numpy as np
import pytest
from click.testing import CliRunner

import sparsec as sc
from sparsec.cli import main
from sparsec.nn.vision import ImageShapeError
from sparsec.runtime.executable import RuntimeInputError

torch = pytest.importorskip("torch", reason="torch is not installed: the HF-loading tests compare against "
                                            "transformers (install torch==2.13.0 and transformers, as .ci/run does)")
transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install -e '.[test]')")

VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48, image_size=32,
              patch_size=8)
TEXT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48, vocab_size=64,
            bos_token_id=0, eos_token_id=1, pad_token_id=2)


def _perturb(hf):
    """Random weights of a useful scale (transformers' init makes position embeddings ~0.02)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.2)
    return hf.eval()


def _vit():
    # non-square image (4 x 3 patches; the width 30 leaves 6 columns the patch convolution cuts off),
    # no q/k/v bias, gelu_new
    config = transformers.ViTConfig(**dict(VISION, image_size=[32, 30]), qkv_bias=False, hidden_act="gelu_new")
    return transformers.ViTModel(config)


BUILDERS = {
    "vit": _vit,
    "vit_classifier": lambda: transformers.ViTForImageClassification(transformers.ViTConfig(**VISION, num_labels=3)),
    "clip_vision_model": lambda: transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**VISION)),
    "clip_vision_projection": lambda: transformers.CLIPVisionModelWithProjection(
        transformers.CLIPVisionConfig(**VISION, projection_dim=16)),
    "clip": lambda: transformers.CLIPModel(transformers.CLIPConfig(text_config=TEXT, vision_config=VISION,
                                                                    projection_dim=16)),
    "siglip_vision_model": lambda: transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**VISION)),
    "siglip_no_head": lambda: transformers.SiglipVisionModel(
        transformers.SiglipVisionConfig(**VISION, vision_use_head=False, hidden_act="gelu")),
    "siglip": lambda: transformers.SiglipModel(transformers.SiglipConfig(text_config=TEXT, vision_config=VISION)),
}


def reference(kind, hf, pixels) -> dict:
    """transformers' outputs under the names sparsec returns."""
    x = torch.from_numpy(pixels)
    with torch.no_grad():
        if kind == "vit_classifier":
            r = hf.vit(pixel_values=x)
            return {"last_hidden_state": r.last_hidden_state.numpy()}
        if kind in ("clip", "siglip"):
            vision = hf.vision_model(pixel_values=x)
            out = {"last_hidden_state": vision.last_hidden_state, "pooler_output": vision.pooler_output}
            if kind == "clip":
                out["image_embeds"] = hf.get_image_features(pixel_values=x).pooler_output
            return {k: v.numpy() for k, v in out.items()}
        r = hf(pixel_values=x)
    names = ("last_hidden_state", "pooler_output", "image_embeds")
    return {k: getattr(r, k).numpy() for k in names if getattr(r, k, None) is not None}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for kind, build in BUILDERS.items():
        hf = _perturb(build())
        path = tmp_path_factory.mktemp(kind)
        hf.save_pretrained(str(path))
        out[kind] = (str(path), hf)
    return out


def pixels(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_matches_transformers(kind, folders):
    path, hf = folders[kind]
    model = sc.load_hf(path)
    specs = sc.hf.input_specs(model)
    assert [s.name for s in specs] == ["pixel_values"]
    x = pixels((2,) + tuple(specs[0].shape[1:]))
    ref = reference(kind, hf, x)
    eager = dict(zip(sc.trace(model, *specs).main.output_names(), sc.interpret(sc.trace(model, *specs), x)))
    cm = sc.compile(model, *specs)  # symbolic batch
    compiled = dict(zip(cm.output_names, cm.run(x)))
    assert set(ref) <= set(compiled), (sorted(ref), cm.output_names)
    for name, want in ref.items():
        assert rel(eager[name], want) < 1e-4, (kind, name, "interpreter")
        err = rel(compiled[name], want)
        print(f"{kind} {name}: compiled max relative error {err:.2e}")
        assert err < 1e-4, (kind, name)


def test_clip_drops_text_tower_and_keeps_projection(folders):
    model = sc.load_hf(folders["clip"][0])
    names = set(model.state_dict())
    assert "visual_projection.weight" in names and "embeddings.class_embedding" in names
    assert not any(n.startswith(("text_model.", "vision_model.", "text_projection")) for n in names)


@pytest.fixture(scope="module")
def clip_compiled(folders):
    model = sc.load_hf(folders["clip_vision_model"][0])
    return model, sc.compile(model, sc.TensorSpec((1, 3, 32, 32), "float32"))


def cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("kind", ["clip_vision_model", "siglip_vision_model"])
def test_int8_vision_tower_cosine(kind, folders, clip_compiled):
    if kind == "clip_vision_model":
        model, fp32 = clip_compiled
    else:
        model = sc.load_hf(folders[kind][0])
        fp32 = sc.compile(model, sc.TensorSpec((1, 3, 32, 32), "float32"))
    q = sc.compile(model, sc.TensorSpec((1, 3, 32, 32), "float32"), quantize="int8", accuracy_samples=0)
    layers = q.report["quantization"]["layers"]
    assert len(layers) >= 2 * 6, layers  # q, k, v, out_proj, fc1, fc2 in each encoder layer
    for seed in range(3):
        x = pixels((1, 3, 32, 32), seed)
        want, got = fp32.run(x), q.run(x)
        for name, a, b in zip(fp32.output_names, got, want):
            c = cosine(a, b)
            print(f"{kind} int8 {name}: cosine similarity to fp32 {c:.5f}")
            assert c > 0.99, (name, c)
            assert not np.array_equal(a, b)  # the quantized weights are really used


@pytest.mark.parametrize("shape", [(1, 3, 24, 32), (1, 1, 32, 32), (1, 3, 32)])
def test_wrong_image_shape_at_compile(shape, folders):
    model = sc.load_hf(folders["siglip_vision_model"][0])
    with pytest.raises(ImageShapeError, match=r"pixel_values must be \[batch, 3, 32, 32\] float32"):
        sc.compile(model, sc.TensorSpec(shape, "float32"))


def test_wrong_dtype_at_compile(folders):
    model = sc.load_hf(folders["vit"][0])
    with pytest.raises(sc.SparsecError, match=r"ViTModel: pixel_values must be \[batch, 3, 32, 30\] float32"):
        sc.compile(model, sc.TensorSpec((1, 3, 32, 30), "float64"))


@pytest.mark.parametrize("shape,what", [((1, 3, 28, 32), "dim 2 must be 32"), ((1, 4, 32, 32), "dim 1 must be 3"),
                                        ((3, 32, 32), "expected rank 4")])
def test_wrong_image_shape_at_run_time(shape, what, clip_compiled):
    _, cm = clip_compiled
    with pytest.raises(RuntimeInputError, match=what) as e:
        cm(pixels(shape))
    assert "pixel_values" in str(e.value) and "32" in str(e.value)


def test_cli_compile_and_run_vision_folder(folders, tmp_path):
    path, hf = folders["siglip_vision_model"]
    spc, img, out = str(tmp_path / "vision.spc"), str(tmp_path / "img.npy"), str(tmp_path / "feats.npz")
    x = pixels((1, 3, 32, 32), 5)
    np.save(img, x)
    r = CliRunner().invoke(main, ["compile", path, "-o", spc])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["run", spc, "--input", f"pixel_values={img}", "--output", out])
    assert r.exit_code == 0, r.output
    feats = np.load(out)
    ref = reference("siglip_vision_model", hf, x)
    assert set(feats.files) == {"last_hidden_state", "pooler_output"}
    for name, want in ref.items():
        assert rel(feats[name], want) < 1e-4
    np.save(img, pixels((1, 3, 16, 32)))
    r = CliRunner().invoke(main, ["run", spc, "--input", f"pixel_values={img}"])
    assert r.exit_code == 1 and "dim 2 must be 32" in r.output, r.output


def test_image_normalizer_matches_the_hf_image_processor(tmp_path):
    """``sc.hf.image_normalizer(folder)`` (``preprocessor_config.json``) does the image processor's
    rescale and normalize (transformers' own ``image_transforms.rescale`` / ``normalize`` as the
    oracle: the processors themselves need torchvision and PIL), and composes with the encoder in
    one compiled function from a uint8 image."""
    import json
    from transformers.image_transforms import normalize, rescale
    from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": OPENAI_CLIP_MEAN,
         "image_std": OPENAI_CLIP_STD}))
    rng = np.random.default_rng(0)
    chw = rng.integers(0, 256, size=(1, 3, 32, 32), dtype=np.uint8)
    cf = dict(data_format="channels_first", input_data_format="channels_first")
    want = normalize(rescale(chw[0], 1 / 255, **cf), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, **cf)[None]
    norm = sc.hf.image_normalizer(str(tmp_path))
    cm = sc.compile(norm, sc.TensorSpec((1, 3, 32, 32), "uint8", name="image"), progress=False)
    np.testing.assert_allclose(cm(chw), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sc.interpret(sc.trace(norm, sc.TensorSpec((1, 3, 32, 32), "uint8")), chw)[0], want,
                               rtol=1e-6, atol=1e-6)
    hf = _perturb(transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**VISION)))
    hf.save_pretrained(str(tmp_path))
    vit = sc.load_hf(str(tmp_path))
    both = sc.compile(lambda image: vit(norm(image))["last_hidden_state"],
                      sc.TensorSpec((1, 3, 32, 32), "uint8", name="image"), progress=False)
    with torch.no_grad():
        ref = hf(pixel_values=torch.from_numpy(np.ascontiguousarray(want))).last_hidden_state.numpy()
    np.testing.assert_allclose(both(chw), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    with pytest.raises(ImageShapeError, match=r"\[batch, 3, height, width\]"):
        sc.trace(norm, sc.TensorSpec((1, 4, 32, 32), "uint8"))
    (tmp_path / "preprocessor_config.json").write_text('{"do_normalize": true, "image_mean": [0.5, 0.5, 0.5]}')
    with pytest.raises(sc.hf.HFConfigError, match="image_std"):
        sc.hf.image_normalizer(str(tmp_path))
