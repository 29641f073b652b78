"""Pool slots made before any run: every pool gets the default limit, a raised one stays."""

from ocog_assets.defs.common.pools import BENCHMARK_POOL, GPU_POOL, POOLS, make_pool_slots


def test_every_pool_gets_its_slot_and_a_raised_limit_is_kept(instance):
    assert make_pool_slots(instance) == {pool: 1 for pool in POOLS}  # dagster.yaml: 1 each
    instance.event_log_storage.set_concurrency_slots(GPU_POOL, 3)
    slots = make_pool_slots(instance)
    assert slots[GPU_POOL] == 3 and slots[BENCHMARK_POOL] == 1
    assert instance.event_log_storage.get_concurrency_keys() >= set(POOLS)
