"""model.compile: the Aux-Net compiles as one graph, and a compiled run resumes bit-exactly on CPU."""

import pytest
import torch

from _launch import TINY, max_abs_diff, run_train, summary, weights_equal
from tleg_dist.models.aux_net import AuxNet


def test_aux_net_compiles_without_graph_breaks(toy_arch):
    model = AuxNet(toy_arch, depth=3, drop_path_rate=0.1).train()
    explained = torch._dynamo.explain(model)(torch.randn(2, 1, 8, 8))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


@pytest.mark.slow
def test_compiled_aux_net_matches_eager(toy_arch, randomize):
    torch.manual_seed(0)
    eager = randomize(AuxNet(toy_arch, depth=3))
    compiled = AuxNet(toy_arch, depth=3)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile(fullgraph=True)  # fullgraph: any graph break is an error
    x = torch.randn(4, 1, 8, 8)
    for m in (eager, compiled):
        m(x).square().sum().backward()
    torch.testing.assert_close(compiled(x), eager(x))
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


@pytest.mark.slow
def test_compiled_run_resumes_bit_exactly(tmp_path):
    common = ["train.epochs=1", "train.progress=false", "data.synthetic_size=256", "data.batch_size=32",
              "model.drop_path_rate=0.1", "checkpoint.every_steps=3", "model.compile.enabled=true",
              "--deepspeed_config", "configs/ds/zero2.json"]
    full, parts = tmp_path / "full", tmp_path / "parts"
    run_train(["--config", str(TINY), f"output_dir={full}", *common])
    run_train(["--config", str(TINY), f"output_dir={parts}", *common, "train.max_steps=5"])
    run_train(["--config", str(TINY), f"output_dir={parts}", "--resume", "auto", *common])
    assert summary(parts)["global_step"] == summary(full)["global_step"] == 8
    assert weights_equal(full / "learngene" / "learngene.safetensors", parts / "learngene" / "learngene.safetensors")


@pytest.mark.slow
def test_compiled_zero3_aux_net_trains_like_eager(tmp_path):
    """Under ZeRO-3 the expansion stays eager (model_factory.compile_engine); the rest compiles."""
    common = ["train.epochs=1", "train.progress=false", "train.max_steps=4", "data.synthetic_size=256",
              "--deepspeed_config", "configs/ds/zero3.json"]
    run_train(["--config", str(TINY), f"output_dir={tmp_path / 'eager'}", *common])
    run_train(["--config", str(TINY), f"output_dir={tmp_path / 'compiled'}", *common, "model.compile.enabled=true"])
    assert max_abs_diff(tmp_path / "eager" / "learngene" / "learngene.safetensors",
                        tmp_path / "compiled" / "learngene" / "learngene.safetensors") < 1e-5
