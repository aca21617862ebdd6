"""The methods of a run go through the data batch by batch in lockstep: a batch's LPIPS
reference features are computed once for all of them, and the variants of one model that differ
only in the fidelity knob (VQFR v2 ``fidelity_ratio``, CodeFormer ``fidelity_weight``) are
restored from one forward per batch. Files and numbers are those of separate runs."""
from __future__ import annotations

import pytest
import torch
from goldens import spy, write_tiny_paired_set

from vqfr.data.images import list_images, read_image
from vqfr.errors import VqfrError
from vqfr.run.benchmark import RunConfig, run_benchmark, sweep_groups
from vqfr.run.methods import parse_methods
from vqfr.run.restorer import Restorer, sweep_family
from vqfr.run.runner import PassOutcome, run_in_lockstep

V2_RUN = ["vqfr-v2", "vqfr-v2:fidelity_ratio=0.5"]


def test_sweep_groups_gather_families_in_run_order():
    methods = parse_methods([
        "vqfr-v2", "codeformer:fidelity_weight=0", "vqfr-v1", "vqfr-v2:fidelity_ratio=1",
        "codeformer", "vqfr-v2:fidelity_ratio=1:twm_disabled=32", "vqfr-v2:branch=texture",
        "vqfr-v2:fidelity_ratio=0.5:twm_disabled=32", "lq"])
    slugs = [[m.slug for m in g] for g in sweep_groups(methods)]
    assert [len(g) for g in slugs] == [2, 2, 1, 2, 1, 1]
    assert slugs[0][0] == methods[0].slug and slugs[0][1] == methods[3].slug
    assert slugs[1] == [methods[1].slug, methods[4].slug]
    assert slugs[3] == [methods[5].slug, methods[7].slug]
    # branch=texture is not an option restore_fidelity_sweep takes: it runs on its own
    assert sweep_family(methods[6]) is None and slugs[4] == [methods[6].slug]
    assert sweep_family(methods[2]) is None and sweep_family(methods[8]) is None


@pytest.fixture(scope="module")
def one_face(faces_dir, tmp_path_factory):
    return write_tiny_paired_set(faces_dir, tmp_path_factory.mktemp("data") / "one", 1, 512)


@pytest.fixture(scope="module")
def v2_weights(tmp_path_factory):
    from vqfr.zoo import write_synthetic_checkpoint

    return write_synthetic_checkpoint("vqfr-v2", tmp_path_factory.mktemp("w") / "v2.pth", seed=1)


def test_family_shares_one_forward_and_equals_separate_restores(one_face, v2_weights, tmp_path,
                                                                monkeypatch):
    from vqfr.archs.vqfr_v2 import VQFRv2

    calls = spy(monkeypatch, VQFRv2, "restore_fidelity_sweep",
                lambda self, x, ratios, **kwargs: tuple(ratios))
    cfg = RunConfig(dataset=str(one_face), methods=V2_RUN, metrics=["psnr"], out=tmp_path,
                    assets={"vqfr-v2": v2_weights}, quiet=True)
    report = run_benchmark(cfg)
    assert [s["method"]["options"]["fidelity_ratio"] for s in report.summaries] == [0.0, 0.5]
    assert calls == [(0.0, 0.5)]          # one forward for both members
    assert "one forward per batch for all 2" in (tmp_path / "log.txt").read_text()

    lq_path = list_images(one_face / "lq")[0]
    stem, lq = lq_path.stem, read_image(lq_path)
    batch = torch.from_numpy(lq).permute(2, 0, 1)[None].contiguous()
    for method, summary in zip(parse_methods(V2_RUN), report.summaries, strict=True):
        alone = Restorer(method, {"vqfr-v2": v2_weights})(batch)[0].permute(1, 2, 0).numpy()
        written = read_image(tmp_path / "one" / method.slug / "images" / f"{stem}.png")
        assert (written == alone).all(), method.slug
        assert summary["counts"]["restored"] == 1

    calls.clear()    # (the separate restores above went through restore() alone)
    again = run_benchmark(cfg)              # all cached: no forward at all
    assert calls == []
    assert [s["counts"]["reused"] for s in again.summaries] == [1, 1]
    assert [s["metrics"] for s in again.summaries] == [s["metrics"] for s in report.summaries]


@pytest.fixture(scope="module")
def tiny_set(faces_dir, tmp_path_factory):
    return write_tiny_paired_set(faces_dir, tmp_path_factory.mktemp("data") / "tiny", 3, 32)


@pytest.fixture(scope="module")
def lpips_weights(tmp_path_factory):
    import torchvision

    from vqfr.zoo import write_synthetic_checkpoint

    with torch.device("meta"):
        vgg = torchvision.models.vgg16()
    return write_synthetic_checkpoint("lpips-vgg16", tmp_path_factory.mktemp("w") / "vgg.pth",
                                      seed=1, layout=vgg.features)


def test_methods_share_the_lpips_reference_per_batch(tiny_set, lpips_weights, tmp_path,
                                                     monkeypatch):
    from vqfr.metrics.lpips_vgg import LPIPS

    calls = spy(monkeypatch, LPIPS, "_features", lambda self, images: images.shape[0])
    methods = ["lq", f"folder:{tiny_set / 'hq'}"]
    common = dict(dataset=str(tiny_set), metrics=["lpips", "psnr"], batch_size=2, quiet=True,
                  assets={"lpips-vgg16": lpips_weights})
    together = run_benchmark(RunConfig(methods=methods, out=tmp_path / "together", **common))
    # batches of 2 and 1: the reference once, then each method's images
    assert calls == [2, 2, 2, 1, 1, 1]
    separate = [run_benchmark(RunConfig(methods=[m], out=tmp_path / f"alone{i}", **common))
                .summaries[0] for i, m in enumerate(methods)]
    assert [s["metrics"] for s in together.summaries] == [s["metrics"] for s in separate]
    assert together.summaries[1]["metrics"]["lpips"] == 0.0     # GT against itself


class _FakePass:
    def __init__(self, batches, fail_at=None):
        self.batches, self.fail_at, self.seen = batches, fail_at, []
        self.outcome = None
        self.metrics = type("M", (), {"metrics": {"psnr": None}})()

    def steps(self):
        self.outcome = PassOutcome(batch_states={"psnr": {}})
        for number in range(self.batches):
            if number == self.fail_at:
                raise VqfrError(f"batch {number} is broken")
            self.seen.append(number)
            yield number


def test_lockstep_order_and_a_failing_pass_stops_alone():
    order = []
    passes = [_FakePass(3), _FakePass(3, fail_at=1), _FakePass(2)]
    for index, fake in enumerate(passes):
        steps = fake.steps

        def tracked(fake=fake, steps=steps, index=index):
            for number in steps():
                order.append((number, index))
                yield number
        fake.steps = tracked
    outcomes = run_in_lockstep(passes)
    assert order == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0)]
    assert [o.error for o in outcomes] == [None, "batch 1 is broken", None]
    assert [p.seen for p in passes] == [[0, 1, 2], [0], [0, 1]]
