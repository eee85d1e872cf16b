"""Label/target builder: hand-checked positives and l,t,r,b at stride 16 and 8."""
import torch

from lighttrack_nas.data.targets import build_targets


def _cells(mask: torch.Tensor) -> set[tuple[int, int]]:
    return {tuple(ij) for ij in torch.nonzero(mask).tolist()}


def test_stride16_positive_diamond_and_ltrb():
    # 256 crop, 16x16 map, points 8 + 16 j; box centre (120, 120) is exactly cell (7, 7)
    boxes = torch.tensor([[90.0, 100.0, 150.0, 140.0], [100.0, 90.0, 160.0, 150.0]])
    cls, reg, weight = build_targets(boxes, 256, 16, 16, radius_px=16)
    assert cls.shape == (2, 16, 16) and reg.shape == (2, 4, 16, 16) and weight.shape == (2, 16, 16)
    # radius 16 px = 1 cell: the centre cell and its 4 neighbours
    assert _cells(cls[0] == 1) == {(7, 7), (6, 7), (8, 7), (7, 6), (7, 8)}
    assert cls.sum(dim=(1, 2)).tolist() == [5.0, 2.0]           # box 2: centre (130, 120), see below
    # l, t, r, b of cell (7, 7), point (120, 120), in box 2
    assert reg[1, :, 7, 7].tolist() == [20.0, 30.0, 40.0, 30.0]
    assert weight[1, 7, 7] == 1
    # points inside box 2 (100 < x < 160, 90 < y < 150): x in {104, 120, 136, 152}, y in {104, 120, 136}
    assert _cells(weight[1] == 1) == {(i, j) for i in range(6, 9) for j in range(6, 10)}
    assert torch.all(reg[1, :, 0, 0] == 0) and weight[1, 0, 0] == 0
    assert torch.all(reg[weight.unsqueeze(1).expand_as(reg) == 1] > 0)


def test_stride16_off_grid_centre():
    # centre (130, 120): Manhattan distances to (120,120)=10, (136,120)=6, (120,104)/(120,136)=26 -> 2 cells
    cls, _, _ = build_targets(torch.tensor([[100.0, 90.0, 160.0, 150.0]]), 256, 16, 16)
    assert _cells(cls[0] == 1) == {(7, 7), (7, 8)}


def test_stride8_positive_diamond_and_ltrb():
    # 256 crop, 32x32 map, points 4 + 8 j; centre (124, 124) is exactly cell (15, 15); radius 2 cells
    cls, reg, weight = build_targets(torch.tensor([[104.0, 94.0, 144.0, 154.0]]), 256, 32, 8, radius_px=16)
    expected = {(15 + di, 15 + dj) for di in range(-2, 3) for dj in range(-2, 3) if abs(di) + abs(dj) <= 2}
    assert _cells(cls[0] == 1) == expected and len(expected) == 13
    # cell (i=12, j=13): point (x=108, y=100)
    assert reg[0, :, 12, 13].tolist() == [4.0, 6.0, 36.0, 54.0]
    # the point x = 4 + 8 * 12.5 is not on the grid; x=100 (j=12) is left of the box -> outside
    assert weight[0, 15, 12] == 0 and weight[0, 15, 13] == 1


def test_other_sizes_and_radius():
    # tiny preset: 128 crop at stride 16 -> 8x8, points 8 + 16 j
    cls, reg, weight = build_targets(torch.tensor([[40.0, 40.0, 72.0, 72.0]]), 128, 8, 16, radius_px=32)
    assert cls.shape == (1, 8, 8)
    # centre (56, 56) = cell (3, 3); radius 2 cells
    assert cls.sum() == 13 and cls[0, 3, 3] == 1 and cls[0, 1, 3] == 1 and cls[0, 2, 2] == 1 and cls[0, 1, 2] == 0
    # points on the box edges (40, 72) are not inside: only (56, 56) is
    assert reg.dtype == torch.float32 and _cells(weight[0] == 1) == {(3, 3)}
    assert reg[0, :, 3, 3].tolist() == [16.0, 16.0, 16.0, 16.0]
