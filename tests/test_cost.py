"""The challenge's inference cost through qonnx: exact baseline figures, 4-bit scaling, sparsity."""
import torch

from train.cost import BASELINE_BOPS, BASELINE_W_BITS, model_cost
from train.masks import init_masks, prune_by
from train.model import ModelConfig, build_vgg10

MACS, WEIGHTS = 12_864_512, 159_104


def test_dense_8bit_baseline_figures():
    c = model_cost(build_vgg10(ModelConfig(8, 8, 8)), discount_sparsity=False)
    assert c.bops == 823_328_768 and c.weight_bits == 1_272_832
    assert c.macs == MACS and c.weights == WEIGHTS
    assert c.cost == 0.5 * 823_328_768 / BASELINE_BOPS + 0.5 * 1_272_832 / BASELINE_W_BITS


def test_4bit_scales_as_it_should():
    c = model_cost(build_vgg10(ModelConfig(4, 4, 4)), discount_sparsity=False)
    assert c.bops == MACS * 4 * 4 and c.weight_bits == WEIGHTS * 4


def test_mixed_bits_first_layer_uses_input_bits():
    c = model_cost(build_vgg10(ModelConfig(8, 4, 4)), discount_sparsity=False)
    first_layer_macs = 2 * 64 * 3 * 1024
    assert c.bops == first_layer_macs * 8 * 4 + (MACS - first_layer_macs) * 4 * 4


def test_cost_falls_as_sparsity_rises():
    torch.manual_seed(0)
    m = init_masks(build_vgg10(ModelConfig(4, 4, 4)))
    costs = [model_cost(m).cost]
    for _ in range(3):
        prune_by(m, 0.5)
        costs.append(model_cost(m).cost)
    assert all(a > b for a, b in zip(costs, costs[1:])), costs
    c = model_cost(m)
    assert c.weights <= WEIGHTS * 0.125 + 1
