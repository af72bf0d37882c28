from fedft.fl.server.sampling import sample_clients


def test_sampling_depends_only_on_seed_and_round():
    assert sample_clients(0, 3, 100, 10) == sample_clients(0, 3, 100, 10)
    assert sample_clients(0, 3, 100, 10) != sample_clients(0, 4, 100, 10)
    assert sample_clients(1, 3, 100, 10) != sample_clients(0, 3, 100, 10)


def test_sampling_is_without_replacement_and_respects_exclusions():
    picked = sample_clients(5, 1, 20, 10, exclude=frozenset(range(12)))
    assert picked == list(range(12, 20))
    picked = sample_clients(5, 2, 20, 10)
    assert len(set(picked)) == 10 and all(0 <= c < 20 for c in picked)


def test_all_clients_when_k_equals_n():
    assert sample_clients(9, 1, 7, 7) == list(range(7))
