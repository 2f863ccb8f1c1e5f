import pandas as pd
import pytest
import torch

from diffexplain.items import PromptItem
from diffexplain.metrics.localisation import inside_outside, mask_to_grid, pointing_game
from diffexplain.metrics.token_roles import attention_shares, role_shares, stage_table
from diffexplain.reporting.tables import row, to_frame

ITEM = PromptItem("p-s0-x", "a red circle", 0)


def test_localisation_metrics_on_a_known_map():
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, 1:3] = True
    sal = torch.zeros(4, 4)
    sal[2, 2] = 5.0
    assert inside_outside(sal, mask) == (pytest.approx(1.25), 0.0)
    assert pointing_game(sal, mask) == 1.0 and pointing_game(-sal, mask) == pytest.approx(3 / 15)
    assert pointing_game(torch.ones(4, 4), mask) == pytest.approx(4 / 16), "a flat map does not point"
    image_mask = torch.zeros(8, 8, dtype=torch.bool)
    image_mask[:4, :2] = True
    assert mask_to_grid(image_mask.numpy(), (4, 4)).nonzero().tolist() == [[0, 0], [1, 0]]


def test_attention_and_role_shares():
    maps = torch.stack([torch.full((2, 2), v) for v in (1.0, 2.0, 1.0)])
    shares = attention_shares(maps, ["a", "red", "a#2"])
    assert shares == {"a": 0.25, "red": 0.5, "a#2": 0.25}
    assert role_shares(shares, {"a": "connective", "red": "colour"}) == {"connective": 0.5, "colour": 0.5}
    rows = [row(ITEM, "role_share", 0.1 * s, s, 999 - s, "cross_attention", token="colour") for s in range(3)]
    table = stage_table(to_frame(rows))
    assert table["colour"].tolist() == pytest.approx([0.0, 0.1, 0.2])


def test_results_frame_keeps_contract_dtypes():
    df = to_frame([row(ITEM, "m", 1, 0, 999)])
    assert str(df.step_index.dtype) == "Int64" and str(df.token.dtype) == "string"
    assert isinstance(to_frame([]), pd.DataFrame)


def test_streamed_curve_means_equal_the_mean_over_items():
    from diffexplain.reporting.tables import CurveMeans

    items = [PromptItem(f"p{k}-s0-x", f"prompt {k}", 0) for k in range(3)]
    frames = [to_frame([row(it, f"{g}_curve", k + j, 5, 500.0, "rise", "ssim", x=j / 2)
                        for g in ("deletion", "insertion") for j in range(3)]
                       + [row(it, "deletion_auc", 0.5, 5, 500.0, "rise", "ssim")]) for k, it in enumerate(items)]
    means = CurveMeans()
    for frame in frames:
        means.add(frame)
    streamed = means.rows().set_index(["metric", "x"]).value
    everything = pd.concat(frames)
    expected = everything[everything.metric.str.endswith("_curve")].groupby(["metric", "x"]).value.mean()
    assert len(streamed) == 6 and (means.rows().prompt == "mean of 3 items").all()
    pd.testing.assert_series_equal(streamed.sort_index(), expected.sort_index(), check_names=False,
                                   check_index_type=False)
