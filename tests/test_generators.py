"""Per-row generators: randn_rows draws row b from generator b only; sample seeds are stable hashes."""

from __future__ import annotations

import pytest
import torch

from invkit import randn_rows, resolve_generator, sample_generators, sample_seed


def test_randn_rows_one_generator_is_one_randn_call():
    a = randn_rows(torch.Generator().manual_seed(4), (3, 5), dtype=torch.float64)
    assert torch.equal(a, torch.randn((3, 5), generator=torch.Generator().manual_seed(4), dtype=torch.float64))


def test_randn_rows_per_row_generators():
    gens = [torch.Generator().manual_seed(s) for s in (10, 11, 12)]
    rows = randn_rows(gens, (3, 2, 4))
    assert rows.shape == (3, 2, 4) and rows.dtype == torch.float32
    for b, s in enumerate((10, 11, 12)):
        assert torch.equal(rows[b], torch.randn((2, 4), generator=torch.Generator().manual_seed(s)))
    assert randn_rows([], (0, 4)).shape == (0, 4)
    with pytest.raises(ValueError, match="2 generators for a batch of 3; pass one per batch row"):
        randn_rows(gens[:2], (3, 4))


def test_sample_seeds_are_stable_distinct_and_fit_manual_seed():
    seeds = {sample_seed(s, i) for s in range(20) for i in range(20)}
    assert len(seeds) == 400 and all(0 <= v < 2**63 for v in seeds)
    # pinned: a change here changes every CLI result for a given --seed
    assert (sample_seed(0, 0), sample_seed(0, 1)) == (6575351983954680287, 1991727161906885552)
    assert sample_seed(0, 1) != sample_seed(1, 0)
    gens = sample_generators(3, 5, 2)
    assert [g.initial_seed() for g in gens] == [sample_seed(3, 5), sample_seed(3, 6)]


def test_resolve_generator():
    g = torch.Generator()
    assert resolve_generator(g) is g
    assert isinstance(resolve_generator(None), torch.Generator)
    assert resolve_generator((g, g)) == [g, g]
    with pytest.raises(ValueError, match="empty list"):
        resolve_generator([])


@pytest.mark.parametrize(
    "bad,message",
    [
        ([torch.Generator(), None], r"generator\[1\] is a NoneType, not a torch.Generator"),
        (5, "generator is a int; pass a torch.Generator or a list of them"),
        ("ab", "generator is a str"),
    ],
)
def test_bad_generators_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        resolve_generator(bad)


def test_randn_rows_refuses_non_generators_instead_of_using_global_state():
    with pytest.raises(ValueError, match=r"generator\[0\] is a NoneType"):
        randn_rows([None, None], (2, 3))


def test_generator_on_another_device_type_is_refused():
    # the device type is compared without touching the device, so this runs without a GPU
    with pytest.raises(ValueError, match=r"^generator is on cpu but the data is on cuda; create it with torch.Generator\(device='cuda'\)"):
        resolve_generator(torch.Generator(), "cuda")
    with pytest.raises(ValueError, match=r"^generator\[0\] is on cpu but the data is on cuda"):
        resolve_generator([torch.Generator(), torch.Generator()], torch.device("cuda", 0))
