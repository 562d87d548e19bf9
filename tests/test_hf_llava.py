"""LLaVA (``llava``) from Hugging Face folders: tiny random-weight ``LlavaForConditionalGeneration``
models (a CLIP tower with a Llama LM; a SigLIP tower with a Qwen2 LM, several feature layers and
the "full" strategy) saved with ``save_pretrained``, against transformers: logits, and greedy
tokens from the same pixel values and prompt; checkpoint name variants; the image-token count."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

import sparsec as sc
from sparsec.cli import main

torch = pytest.importorskip("torch", reason="torch is not installed: the HF-loading tests compare against "
                                            "transformers (install torch==2.13.0 and transformers, as .ci/run does)")
transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install -e '.[test]')")

VISION = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=48, image_size=32,
              patch_size=8)
IMAGE_TOKEN = 90
NEW_TOKENS = 8


def _text_config(kind):
    common = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    return transformers.LlamaConfig(**common) if kind == "llama" else transformers.Qwen2Config(**common)


CASES = {
    # tower, LM, vision_feature_layer, vision_feature_select_strategy
    "clip_llama": (transformers.CLIPVisionConfig, "llama", -2, "default"),
    "siglip_qwen2": (transformers.SiglipVisionConfig, "qwen2", [-1, 1], "full"),
}


def _build(case):
    vcls, lm, layer, strategy = CASES[case]
    config = transformers.LlavaConfig(vision_config=vcls(**VISION), text_config=_text_config(lm),
                                      image_token_index=IMAGE_TOKEN, vision_feature_layer=layer,
                                      vision_feature_select_strategy=strategy, projector_hidden_act="gelu")
    hf = transformers.LlavaForConditionalGeneration(config)
    torch.manual_seed(0)
    with torch.no_grad():  # weights of a scale that gives varied greedy tokens (not one repeated token)
        for name, p in hf.named_parameters():
            if "norm" in name and name.endswith("weight") and p.ndim == 1:
                p.fill_(1.0)
            else:
                p.normal_(0, 1.0 if "embed_tokens" in name else 0.3)
    hf.generation_config.eos_token_id = None  # generate exactly NEW_TOKENS
    return hf.eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{case: (folder, transformers model)}"""
    out = {}
    for case in CASES:
        hf = _build(case)
        path = tmp_path_factory.mktemp(case)
        hf.save_pretrained(str(path))
        out[case] = (str(path), hf)
    return out


@pytest.fixture(scope="module", params=list(CASES))
def llava(request, folders):
    """(folder, transformers model, sparsec model, compiled model) for one case."""
    path, hf = folders[request.param]
    model = sc.load_hf(path)
    cm = sc.compile(model, sc.TensorSpec((1, 3, 32, 32), "float32"), sc.TensorSpec((1, "seq"), "int64"))
    return path, hf, model, cm


def prompt(n_image_tokens, seed=0):
    rng = np.random.default_rng(seed)
    text = rng.integers(3, IMAGE_TOKEN, 7)
    return np.array([[0, *text[:3], *[IMAGE_TOKEN] * n_image_tokens, *text[3:]]], np.int64)


def pixels(seed=0):
    return np.random.default_rng(seed).standard_normal((1, 3, 32, 32)).astype(np.float32)


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def test_image_tokens_per_image(llava):
    _, hf, model, _ = llava
    x = torch.from_numpy(pixels())
    with torch.no_grad():
        feats = hf.model.get_image_features(pixel_values=x).pooler_output
    assert model.image_tokens == feats[0].shape[0]


def test_logits_match_transformers(llava):
    _, hf, model, cm = llava
    ids, x = prompt(model.image_tokens), pixels()
    with torch.no_grad():
        want = hf(input_ids=torch.from_numpy(ids), pixel_values=torch.from_numpy(x)).logits.numpy()
    assert cm.input_names == ["pixel_values", "input_ids"]
    assert rel(sc.interpret(sc.trace(model, *model.input_specs()), x, ids)[0], want) < 1e-4
    err = rel(cm(x, ids), want)
    print(f"llava logits: compiled max relative error {err:.2e}")
    assert err < 1e-4


@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_tokens_match_transformers(llava, seed):
    _, hf, model, cm = llava
    ids, x = prompt(model.image_tokens, seed), pixels(seed)
    with torch.no_grad():
        want = hf.generate(input_ids=torch.from_numpy(ids), pixel_values=torch.from_numpy(x),
                           max_new_tokens=NEW_TOKENS, do_sample=False).numpy()
    got = cm.generate(ids, NEW_TOKENS, pixel_values=x)
    assert got.shape == (1, ids.shape[1] + NEW_TOKENS)
    print("greedy tokens:", got[0, ids.shape[1]:].tolist())
    np.testing.assert_array_equal(got, want)
    assert len(set(want[0, ids.shape[1]:].tolist())) >= 3  # a model that does not repeat one token
    # the image matters: another image gives other logits at the prompt's end
    assert not np.allclose(cm(pixels(seed + 7), ids)[0, -1], cm(x, ids)[0, -1])


def test_text_only_generation_matches_transformers(llava):
    _, hf, _, cm = llava
    ids = prompt(0)
    with torch.no_grad():
        want = hf.generate(input_ids=torch.from_numpy(ids), max_new_tokens=NEW_TOKENS, do_sample=False).numpy()
    np.testing.assert_array_equal(cm.generate(ids, NEW_TOKENS), want)


def test_wrong_image_token_count(llava):
    _, _, model, cm = llava
    for n in (model.image_tokens - 1, model.image_tokens + 2, 0):
        ids = prompt(n)
        assert np.isnan(cm(pixels(), ids)).all()
        with pytest.raises(sc.SparsecError, match="number of image tokens"):
            cm.generate(ids, 2, pixel_values=pixels())


def test_generate_input_errors(llava):
    _, _, model, cm = llava
    with pytest.raises(sc.SparsecError, match="takes no input 'image'"):
        sc.runtime.generate.generate(cm, prompt(model.image_tokens), 2, {"image": pixels()})
    with pytest.raises(sc.SparsecError, match=r"dim 2 must be 32"):
        cm.generate(prompt(model.image_tokens), 2, pixel_values=np.zeros((1, 3, 16, 32), np.float32))


def test_transformers5_in_memory_names(llava, tmp_path):
    """A checkpoint written from ``state_dict()`` (``model.vision_tower.*``, ``model.language_model.*``,
    ``lm_head.weight``) loads onto the same parameters."""
    from safetensors.torch import save_file
    path, hf, model, _ = llava
    sd = {k: v.contiguous() for k, v in hf.state_dict().items()}
    assert any(k.startswith("model.language_model.") for k in sd)
    save_file(sd, str(tmp_path / "model.safetensors"))
    with open(f"{path}/config.json") as f:
        (tmp_path / "config.json").write_text(json.dumps(json.load(f)))
    other = sc.load_hf(str(tmp_path))
    a, b = model.state_dict(), other.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_unsupported_configs(folders, tmp_path):
    import shutil
    path, _ = folders["clip_llama"]
    shutil.copy(f"{path}/model.safetensors", tmp_path)
    with open(f"{path}/config.json") as f:
        config = json.load(f)
    for key, value, what in [("vision_feature_select_strategy", "cls", "vision_feature_select_strategy"),
                             ("text_config", {**config["text_config"], "model_type": "gpt2"}, "text_config"),
                             ("vision_config", {**config["vision_config"], "model_type": "vit"}, "vision_config"),
                             ("vision_feature_layer", 7, "hidden state 7")]:
        (tmp_path / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(sc.SparsecError, match=what):
            sc.load_hf(str(tmp_path))


def test_cli_compile_and_generate_with_image(folders, tmp_path):
    path, hf = folders["clip_llama"]
    spc, img = str(tmp_path / "vlm.spc"), str(tmp_path / "img.npy")
    ids, x = prompt(16, 3), pixels(3)  # 16 patches, CLS dropped
    np.save(img, x)
    r = CliRunner().invoke(main, ["compile", path, "-o", spc])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["generate", spc, "--ids", ",".join(map(str, ids[0])), "--max-new-tokens",
                                  str(NEW_TOKENS), "--pixel-values", img])
    assert r.exit_code == 0, r.output
    got = [int(t) for t in r.output.strip().splitlines()[-1].split(",")]
    with torch.no_grad():
        want = hf.generate(input_ids=torch.from_numpy(ids), pixel_values=torch.from_numpy(x),
                           max_new_tokens=NEW_TOKENS, do_sample=False)[0].tolist()
    assert got == want


def test_batch_of_two_images_symbolic_batch(folders):
    """``sc.hf.input_specs`` (what ``sparsec compile`` uses): symbolic batch; two prompts with
    their image tokens at different positions, two images."""
    path, hf = folders["clip_llama"]
    model = sc.load_hf(path)
    cm = sc.compile(model, *sc.hf.input_specs(model))
    n = model.image_tokens
    ids = np.array([[0, 5, 7, *[IMAGE_TOKEN] * n, 9, 11, 13], [0, 8, *[IMAGE_TOKEN] * n, 4, 9, 11, 12]], np.int64)
    x = np.concatenate([pixels(4), pixels(5)])
    with torch.no_grad():
        logits = hf(input_ids=torch.from_numpy(ids), pixel_values=torch.from_numpy(x)).logits.numpy()
        want = hf.generate(input_ids=torch.from_numpy(ids), pixel_values=torch.from_numpy(x),
                           max_new_tokens=NEW_TOKENS, do_sample=False).numpy()
    assert rel(cm(x, ids), logits) < 1e-4
    np.testing.assert_array_equal(cm.generate(ids, NEW_TOKENS, pixel_values=x), want)


def test_generate_by_recomputation_from_main_only(llava, tmp_path):
    """A graph with only the main function (IR text of the traced model): ``generate`` recomputes
    with the image at every step, and gives the same tokens."""
    _, _, model, cm = llava
    g = sc.trace(model, *model.input_specs())
    main_only = sc.compile(g)
    assert list(main_only.executables) == ["main"]
    ids, x = prompt(model.image_tokens, 2), pixels(2)
    np.testing.assert_array_equal(main_only.generate(ids, 4, pixel_values=x), cm.generate(ids, 4, pixel_values=x))
    with pytest.raises(sc.SparsecError, match="number of image tokens"):
        main_only.generate(prompt(model.image_tokens + 1), 2, pixel_values=x)
    with pytest.raises(sc.SparsecError, match="give the inputs other than input_ids"):
        main_only.generate(ids, 2)


def test_quantized_accuracy_report_uses_prompts_with_image_tokens(folders):
    """The accuracy report of a quantized LLaVA runs on the model's own ``sample_inputs``
    (random prompts would not hold ``image_tokens`` image tokens and give NaN logits)."""
    path, _ = folders["clip_llama"]
    model = sc.load_hf(path)
    samples = model.sample_inputs(2)
    assert all(int((ids == model.image_token_id).sum()) == model.image_tokens for _, ids in samples)
    cm = sc.compile(model, sc.TensorSpec((1, 3, 32, 32), "float32"), sc.TensorSpec((1, "seq"), "int64"),
                    quantize="int8", accuracy_samples=2)
    acc = cm.report["quantization"]["accuracy"]
    assert acc is not None, cm.report["quantization"]["accuracy_note"]
    text = repr(acc)
    assert "nan" not in text.lower(), text
