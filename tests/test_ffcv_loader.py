"""FFCV loaders: DistributedSampler order per rank, disjoint covering shards, resume, keepable batches."""

import pytest
import torch

from tleg_dist.config import AugConfig, DataConfig, FFCVConfig
from tleg_dist.data import DataError, fashion_mnist as fm
from tleg_dist.data.sampler import shard_indices
from tleg_dist.data.normalize import SourceStats
from tleg_dist.models.arch import ViTArch

pytest.importorskip("ffcv")
# numba's dispatcher finalizer raises a harmless KeyError when ffcv's compiled pipelines are freed.
pytestmark = [pytest.mark.ffcv, pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

from tleg_dist.data.ffcv_loader import build_ffcv_data  # noqa: E402

N_TRAIN, N_VAL, BS = 240, 50, 20
ARCH = ViTArch()  # 28 px, 1 channel: the Fashion-MNIST model


@pytest.fixture(scope="module")
def betons(fmnist_beton):
    return fmnist_beton("train", N_TRAIN), fmnist_beton("val", N_VAL)


def cfg(betons, **kw):
    base = dict(format="ffcv", train_path=betons[0], val_path=betons[1], batch_size=BS, eval_batch_size=16,
                num_workers=1)
    return DataConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def ranks(betons):
    return [build_ffcv_data(cfg(betons), ARCH, rank=r, world_size=2, seed=5) for r in (0, 1)]


def expected(split, idx):
    x, y = fm.load_split(None, split)
    return SourceStats.grey(fm.MEAN, fm.STD).normalize(1, 28)(x[idx].unsqueeze(1)), y[idx]


def collect(batches):
    xs, ys = zip(*batches)  # kept across the whole epoch: catches reused buffers
    return torch.cat(xs), torch.cat(ys)


def test_two_ranks_read_disjoint_covering_shards_in_sampler_order(ranks):
    seen = []
    for rank, bundle in enumerate(ranks):
        assert len(bundle.train) == N_TRAIN // 2 // BS and bundle.num_classes == 10
        x, y = collect(bundle.train.epoch(1))
        idx = shard_indices(N_TRAIN, epoch=1, seed=5, rank=rank, world_size=2, shuffle=True, drop_last=True)
        ex, ey = expected("train", idx)
        assert x.shape == (N_TRAIN // 2, 1, 28, 28) and x.is_contiguous()
        assert torch.equal(x, ex)  # raw file + FFCV's lookup table of Normalize = the tensor path, exactly
        assert torch.equal(y, ey)
        seen.append(set(idx))
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(N_TRAIN))

    vx, vy = zip(*[collect(b.val) for b in ranks])
    assert [len(y) for y in vy] == [25, 25] and [len(b.val) for b in ranks] == [2, 2]
    ex, ey = expected("val", list(range(N_VAL)))
    assert torch.equal(torch.stack([vx[0], vx[1]], 1).flatten(0, 1), ex)
    assert torch.equal(torch.stack(vy, 1).flatten(), ey)


def test_resume_mid_epoch_and_leaving_early(ranks):
    stream = ranks[0].train
    x, y = collect(stream.epoch(2))
    for first in stream.epoch(3):  # leave an epoch after one batch: its prefetch thread must stop
        break
    rx, ry = collect(stream.epoch(2, start_batch=4))
    assert torch.equal(rx, x[4 * BS:]) and torch.equal(ry, y[4 * BS:])
    assert not torch.equal(first[1], y[:BS])  # another epoch, another order
    assert list(stream.epoch(2, start_batch=len(stream))) == []
    with pytest.raises(ValueError, match="start_batch"):
        stream.epoch(2, start_batch=len(stream) + 1)


def test_classes_limit_flip_and_erasing(betons):
    aug = AugConfig(hflip=1.0, reprob=0.5)  # every image flipped (in place, by our op), half erased
    b = build_ffcv_data(cfg(betons, classes=[7, 3], train_limit=2 * BS, aug=aug), ViTArch(in_chans=3),
                        rank=0, world_size=1, seed=0)
    assert b.num_classes == 2 and len(b.train) == 2
    labels = fm.load_split(None, "train")[1][:N_TRAIN]
    kept = torch.nonzero((labels == 7) | (labels == 3)).flatten()[:2 * BS]  # classes first, then the limit
    rng = torch.get_rng_state()
    x, y = collect(b.train.epoch(0))
    assert torch.equal(rng, torch.get_rng_state())  # random erasing is seeded aside the trainer's RNG
    idx = kept[shard_indices(2 * BS, epoch=0, seed=0, rank=0, world_size=1, shuffle=True, drop_last=True)]
    ex, ey = expected("train", idx)
    assert torch.equal(y, (ey == 3).long())  # 7 -> 0, 3 -> 1
    assert x.shape == (2 * BS, 3, 28, 28) and x.is_contiguous(memory_format=torch.channels_last)
    erased = []
    for a, e in zip(x, ex):  # each image is its flipped source, except inside one erased rectangle
        rows, cols = torch.nonzero(((a - e.flip(-1)).abs() > 1e-5).any(0), as_tuple=True)
        if len(rows):
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert box <= 0.4 * 28 * 28  # timm erases at most 1/3 of the area; anything else is wrong
        erased.append(bool(len(rows)))
    assert 0 < sum(erased) < len(erased)
    rx, _ = collect(b.train.epoch(0, start_batch=1))
    assert torch.equal(rx, x[BS:])  # erasing is replayed exactly on resume
    vx, vy = collect(b.val)
    vlabels = fm.load_split(None, "val")[1][:N_VAL]
    assert torch.equal(vy, torch.tensor([{7: 0, 3: 1}[int(v)] for v in vlabels if v in (3, 7)]))


def test_quasi_random(betons):
    with pytest.raises(DataError, match="quasi_random is not supported with several ranks"):
        build_ffcv_data(cfg(betons, ffcv=FFCVConfig(order="quasi_random")), ARCH, rank=0, world_size=2, seed=0)
    b = build_ffcv_data(cfg(betons, ffcv=FFCVConfig(order="quasi_random", os_cache=False)), ARCH, rank=0,
                        world_size=1, seed=0)
    x, y = collect(b.train.epoch(0))
    assert len(y) == N_TRAIN
    rx, _ = collect(b.train.epoch(0, start_batch=3))
    assert torch.equal(rx, x[3 * BS:])  # the same epoch's order, resumed


def test_building_and_iterating_keep_the_trainers_thread_count(betons):
    """Importing ffcv and building its Loaders set torch's thread count to FFCV's worker count
    (here 1); the trainer must keep its own for its forward and backward passes."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        b = build_ffcv_data(cfg(betons), ARCH, rank=0, world_size=1, seed=0)
        assert torch.get_num_threads() == 2
        for _ in b.train.epoch(0):
            assert torch.get_num_threads() == 2
        collect(b.val)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_pipeline_matches_cpu(betons, ranks):
    b = build_ffcv_data(cfg(betons), ARCH, rank=1, world_size=2, seed=5, device=torch.device("cuda", 0))
    x, y = collect(b.train.epoch(1))
    assert x.is_cuda and y.is_cuda and x.dtype == torch.float32
    cx, cy = collect(ranks[1].train.epoch(1))
    torch.testing.assert_close(x.cpu(), cx, atol=1e-5, rtol=0)
    assert torch.equal(y.cpu(), cy)
    vx, _ = collect(b.val)
    torch.testing.assert_close(vx.cpu(), collect(ranks[1].val)[0], atol=1e-5, rtol=0)


def test_val_split_is_held_out_of_the_train_file(betons):
    b = build_ffcv_data(cfg(betons, train_limit=160, val_split=40, eval_on="val"), ARCH, rank=0, world_size=1, seed=0)
    x, y = collect(b.val)
    ex, ey = expected("train", list(range(N_TRAIN - 40, N_TRAIN)))  # the last 40 of the train file
    assert torch.equal(x, ex) and torch.equal(y, ey)
    assert len(b.train) == 160 // BS
