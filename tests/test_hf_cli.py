"""``sparsec compile FOLDER`` on Hugging Face folders, then ``sparsec generate`` / ``run`` / ``show``."""
import numpy as np
import pytest
from click.testing import CliRunner

from sparsec.cli import main

torch = pytest.importorskip("torch", reason="torch is not installed: the HF-loading tests compare against "
                                            "transformers (install torch==2.13.0 and transformers, as .ci/run does)")
transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install -e '.[test]')")


def test_compile_and_generate_causal_lm_folder(tmp_path):
    config = transformers.Qwen2MoeConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, num_experts=4,
                                         num_experts_per_tok=2, moe_intermediate_size=16,
                                         shared_expert_intermediate_size=32, pad_token_id=0)
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.2)
    hf.save_pretrained(str(tmp_path / "hf"))
    spc = str(tmp_path / "m.spc")
    r = CliRunner().invoke(main, ["compile", str(tmp_path / "hf"), "-o", spc])
    assert r.exit_code == 0, r.output
    assert "sparse-activation" in r.output
    prompt = [5, 17, 42, 7]
    r = CliRunner().invoke(main, ["generate", spc, "--ids", ",".join(map(str, prompt)), "--max-new-tokens", "8"])
    assert r.exit_code == 0, r.output
    got = [int(t) for t in r.output.strip().splitlines()[-1].split(",")]
    hf.generation_config.eos_token_id = None
    with torch.no_grad():
        want = hf.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False)[0].tolist()
    assert got == want
    r = CliRunner().invoke(main, ["show", str(tmp_path / "hf")])
    assert r.exit_code == 0 and "input_ids" in r.output, r.output


def test_compile_and_run_bert_folder(tmp_path):
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=16)
    torch.manual_seed(0)
    hf = transformers.BertModel(config).eval()
    hf.save_pretrained(str(tmp_path / "bert"))
    spc = str(tmp_path / "b.spc")
    r = CliRunner().invoke(main, ["compile", str(tmp_path / "bert"), "-o", spc])
    assert r.exit_code == 0, r.output
    ids = np.array([[3, 9, 4, 1]], np.int64)
    mask = np.array([[1, 1, 1, 0]], np.int64)
    for name, a in (("ids", ids), ("mask", mask), ("types", np.zeros_like(ids))):
        np.save(tmp_path / f"{name}.npy", a)
    r = CliRunner().invoke(main, ["run", spc, "--input", f"input_ids={tmp_path / 'ids.npy'}",
                                  "--input", f"attention_mask={tmp_path / 'mask.npy'}",
                                  "--input", f"token_type_ids={tmp_path / 'types.npy'}",
                                  "--output", str(tmp_path / "out.npz")])
    assert r.exit_code == 0, r.output
    (got,) = np.load(tmp_path / "out.npz").values()
    with torch.no_grad():
        want = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4


def test_compile_refuses_bad_folder(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gpt_bigcode"}')
    r = CliRunner().invoke(main, ["compile", str(tmp_path), "-o", str(tmp_path / "x.spc")])
    assert r.exit_code == 1 and "model_type 'gpt_bigcode' is not supported" in r.output
