"""Batch 1 in training mode: every course network says which BatchNorm would see a single value, before any runs.

BatchNorm in training needs more than one value per channel. A network's first layers can see a large map while
its last stage sees one pixel; without a check the error comes from deep inside torch, after earlier BatchNorms
have already moved their running statistics.
"""
import pytest
import torch
from types import SimpleNamespace

from attncourse.models import InceptionNet, PlainNet
from attncourse.models.branch import BranchResNet
from attncourse.models import AttnResNet
from attncourse.models.segmentation import SegNet
from attncourse.models.skip_fusion import SkipFusionNet

NETS = {
    "AttnResNet": lambda: AttnResNet(1, 3),
    "AttnResNet+cbam": lambda: AttnResNet(1, 3, attention="cbam", attention_kwargs={"reduction": 4}),
    "BranchResNet+condconv": lambda: BranchResNet(1, 3, conv="condconv"),
    "SegNet+danet": lambda: SegNet(1, 3, head="danet"),
    "SkipFusionNet+concat": lambda: SkipFusionNet(1, 3, fusion="concat"),
    "PlainNet": lambda: PlainNet(1, 3),
    "InceptionNet": lambda: InceptionNet(1, 3),
}


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("name", NETS)
def test_batch_one_that_shrinks_to_one_pixel_fails_clearly_and_changes_nothing(name):
    torch.manual_seed(0)
    net = NETS[name]().train()
    before = _state(net)
    with pytest.raises(ValueError, match=rf"^{type(net).__name__}: in training mode its BatchNorm needs more than one "
                                         r"value per channel, but batch 1 of shape \(1, 1, 3, 3\) reaches '.+' as"):
        net(torch.rand(1, 1, 3, 3))
    after = _state(net)
    assert all(torch.equal(before[k], after[k]) for k in before), "the check moved a running statistic"
    assert all(m.training for m in net.modules()), "the check left a submodule in eval mode"


@pytest.mark.parametrize("name", NETS)
def test_batch_one_with_room_trains_and_eval_takes_anything(name):
    torch.manual_seed(0)
    net = NETS[name]()
    net.train()(torch.rand(1, 1, 40, 40)).sum().backward()   # the last map is larger than 1×1: fine
    net.eval()(torch.rand(1, 1, 3, 3))                        # eval mode uses the running statistics


def test_the_check_runs_only_for_batch_one_in_training():
    calls = []
    net = AttnResNet(1, 3)
    net.register_forward_pre_hook(lambda mod, inp: calls.append(tuple(inp[0].shape)))
    net.train()(torch.rand(2, 1, 8, 8))
    net.eval()(torch.rand(1, 1, 8, 8))
    assert len(calls) == 2                                     # no extra dry run
    net.train()(torch.rand(1, 1, 8, 8))
    assert len(calls) == 4                                     # batch 1 in training: one dry run, then the real one


@pytest.mark.parametrize("conv", ["sk", "split_attn"])
def test_pooled_batchnorm_cannot_train_on_batch_one_at_any_size_and_says_where(conv):
    """SK's fuse and split attention normalise a pooled descriptor [N, d, 1, 1] with BatchNorm: one value per
    channel for N = 1, whatever the image size."""
    net = BranchResNet(1, 3, conv=conv).train()
    with pytest.raises(ValueError, match=r"BranchResNet: .*batch 1 of shape \(1, 1, 40, 40\) reaches '.*bn.*'"):
        net(torch.rand(1, 1, 40, 40))
    net(torch.rand(2, 1, 40, 40))
